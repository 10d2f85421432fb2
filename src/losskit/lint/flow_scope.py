"""What a function's names hold where it returns or yields, and the bindings the engine does not
record (tuple unpacking, loop targets): the ground :mod:`losskit.lint.flow` follows values on.

:class:`Walk` reads a function's statements in order: straight-line code is followed, both
branches of an ``if`` are merged (a name bound in only one of them is unknown), a name bound in a
loop or ``try`` body is unknown after it, and each ``return`` / ``yield`` records the values its
names may hold (:class:`Body`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import libcst as cst

from losskit.lint.engine import Context
from losskit.lint.names import scatters_one

__all__ = ["Item", "Each", "Value", "Env", "Bindings", "Body", "Walk"]


@dataclass(frozen=True)
class Item:
    """Element ``index`` of the tuple ``source`` holds (``a, b = f(x)`` binds ``b`` to Item(f(x), 1))."""

    source: Value
    index: int


@dataclass(frozen=True)
class Each:
    """An item of iterating over ``source`` (``for x in gen()``)."""

    source: Value


Value = Union[cst.BaseExpression, Item, Each, str]  # noqa: UP007 (a runtime alias)
Env = dict[str, Union[tuple[Value, ...], None]]  # noqa: UP007


class Bindings:
    """Bindings the engine does not record as ``name = value`` -- names unpacked from a tuple
    (``a, b = f(x)``), loop targets, ``with ... as x`` -- and the file's functions and methods,
    read off what the engine's one pass collected (no walk of its own)."""

    def __init__(self, ctx: Context) -> None:
        #: (function or None, name) -> [(line, value or None for unknown)]
        self.bindings: dict[tuple[cst.CSTNode | None, str], list[tuple[int, Value | None]]] = {}
        #: module-level functions by name: [(line, def)] (a notebook may define one twice)
        self.defs: dict[str, list[tuple[int, cst.FunctionDef]]] = {}
        #: method -> its class
        self.owner: dict[cst.FunctionDef, cst.ClassDef] = {}
        for fn, block, _ in ctx.functions:
            if block is None:
                self.defs.setdefault(fn.name.value, []).append((ctx.pos(fn)[0], fn))
            elif isinstance(block, cst.ClassDef) and fn in block.body.body:
                self.owner[fn] = block
        for line, target, value, scope in ctx.unpacks:
            self.bind(scope, target, value, line)
        for loop, scope in ctx.loops:
            if isinstance(loop, cst.For):
                self.bind(scope, loop.target, Each(loop.iter), ctx.pos(loop)[0])

    def bind(self, scope: cst.CSTNode | None, target: cst.BaseExpression, value: Value | None, line: int) -> None:
        if isinstance(target, cst.Name):
            self.bindings.setdefault((scope, target.value), []).append((line, value))
        elif isinstance(target, (cst.Tuple, cst.List)):
            starred = any(isinstance(e, cst.StarredElement) for e in target.elements)
            for i, e in enumerate(target.elements):
                self.bind(scope, e.value, None if starred or value is None else Item(value, i), line)


@dataclass
class Body:
    """A function's ``return`` and ``yield`` values with what each name held there."""

    returns: list[tuple[int, cst.BaseExpression | None, Env]]
    yields: list[tuple[int, cst.BaseExpression | None, Env]]


def _statements(suite: cst.BaseSuite) -> Sequence[cst.CSTNode]:
    return suite.body  # IndentedBlock: statements; SimpleStatementSuite: small statements


def _assigned(node: cst.CSTNode) -> set[str]:
    """The plain names bound anywhere in ``node`` (not in nested functions or classes)."""
    names: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
            names.add(n.name.value)
            return False

        def visit_ClassDef(self, n: cst.ClassDef) -> bool:
            names.add(n.name.value)
            return False

        def visit_AssignTarget(self, n: cst.AssignTarget) -> None:
            names.update(_target_names(n.target))

        def visit_AugAssign(self, n: cst.AugAssign) -> None:
            names.update(_target_names(n.target))

        def visit_AnnAssign(self, n: cst.AnnAssign) -> None:
            names.update(_target_names(n.target))

        def visit_For(self, n: cst.For) -> None:
            names.update(_target_names(n.target))

        def visit_AsName(self, n: cst.AsName) -> None:
            names.update(_target_names(n.name))

        def visit_Call(self, n: cst.Call) -> None:  # z.mul_(2) changes z
            func = n.func
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
                attr = func.attr.value
                if attr.endswith("_") and not attr.startswith("_"):
                    names.add(func.value.value)

    node.visit(_V())
    return names


def _target_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _merge(a: Env, b: Env) -> Env:
    out: Env = {}
    for name in a.keys() | b.keys():
        x, y = a.get(name), b.get(name)
        out[name] = None if x is None or y is None or name not in a or name not in b else tuple(dict.fromkeys(x + y))
    return out


class Walk:
    """What each name of a function holds at each ``return`` and ``yield``: straight-line code is
    followed, both branches of an ``if`` are merged, and a name bound in a loop or ``try`` body
    is unknown after it."""

    def __init__(self, ctx: Context, peel: Callable[[cst.BaseExpression], cst.BaseExpression]) -> None:
        self.ctx = ctx
        self.peel = peel
        self.body = Body([], [])

    def run(self, fn: cst.FunctionDef) -> Body:
        self.block(_statements(fn.body), {})
        return self.body

    def block(self, statements: Sequence[cst.CSTNode], env: Env) -> Env:
        for s in statements:
            env = self.statement(s, env)
        return env

    def statement(self, s: cst.CSTNode, env: Env) -> Env:
        if isinstance(s, cst.SimpleStatementLine):
            return self.block(s.body, env)
        if isinstance(s, cst.If):
            then = self.block(_statements(s.body), dict(env))
            orelse = s.orelse
            if orelse is None:
                other = dict(env)
            elif isinstance(orelse, cst.If):
                other = self.statement(orelse, dict(env))
            else:
                other = self.block(_statements(orelse.body), dict(env))
            return _merge(then, other)
        if isinstance(s, cst.With):
            for item in s.items:
                if item.asname is not None:
                    for n in _target_names(item.asname.name):
                        env[n] = None
            return self.block(_statements(s.body), env)
        if isinstance(s, (cst.For, cst.While, cst.Try, cst.TryStar)) or not isinstance(s, cst.BaseSmallStatement):
            if isinstance(s, (cst.For, cst.While, cst.Try, cst.TryStar)):
                for suite in self.suites(s):
                    self.block(_statements(suite), dict(env))  # returns and yields inside are recorded
            for n in _assigned(s):
                env[n] = None
            return env
        return self.small(s, env)

    @staticmethod
    def suites(s: cst.CSTNode) -> list[cst.BaseSuite]:
        suites = [s.body] if isinstance(s, (cst.For, cst.While, cst.Try, cst.TryStar)) else []
        if isinstance(s, (cst.Try, cst.TryStar)):
            suites += [h.body for h in s.handlers]
            suites += [x.body for x in (s.orelse, s.finalbody) if x is not None]
        elif isinstance(s, (cst.For, cst.While)) and s.orelse is not None:
            suites.append(s.orelse.body)
        return suites

    def values(self, expr: cst.BaseExpression, env: Env) -> tuple[Value, ...] | None:
        peeled = self.peel(expr)
        if isinstance(peeled, cst.Name) and peeled.value in env:
            return env[peeled.value]
        return (peeled,)

    def bind(self, target: cst.BaseExpression, value: Value | None, env: Env) -> None:
        if isinstance(target, cst.Name):
            if value is None:
                env[target.value] = None
            elif isinstance(value, cst.BaseExpression):
                env[target.value] = self.values(value, env)
            else:
                env[target.value] = (value,)
        elif isinstance(target, (cst.Tuple, cst.List)):
            starred = any(isinstance(e, cst.StarredElement) for e in target.elements)
            literal = isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) == len(target.elements)
            for i, e in enumerate(target.elements):
                if starred or value is None:
                    part: Value | None = None
                elif literal:
                    assert isinstance(value, (cst.Tuple, cst.List))
                    part = value.elements[i].value
                else:
                    source = value
                    if isinstance(value, cst.BaseExpression):
                        held = self.values(value, env)
                        source = held[0] if held is not None and len(held) == 1 else value
                    part = Item(source, i)
                self.bind(e.value, part, env)
        else:  # self.x = ..., t[i] = ...: a name changed through an attribute or index is unknown
            base = target
            while isinstance(base, (cst.Subscript, cst.Attribute)):
                base = base.value
            if isinstance(base, cst.Name) and base.value != "self":
                env[base.value] = None

    def small(self, s: cst.CSTNode, env: Env) -> Env:
        line = self.ctx.pos(s)[0]
        if isinstance(s, cst.Assign):
            for t in s.targets:
                self.bind(t.target, s.value, env)
        elif isinstance(s, cst.AnnAssign):
            self.bind(s.target, s.value, env)
        elif isinstance(s, (cst.AugAssign, cst.Del)):
            for n in _target_names(s.target):
                env[n] = None
        elif isinstance(s, cst.Return):
            self.body.returns.append((line, s.value, dict(env)))
        elif isinstance(s, cst.Expr):
            value = s.value
            if isinstance(value, cst.Yield) and not isinstance(value.value, cst.From):
                self.body.yields.append((line, value.value, dict(env)))
            elif isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
                self.in_place(value, env)
        return env

    def in_place(self, call: cst.Call, env: Env) -> None:
        """``t.scatter_(1, idx, 1)`` on zeros makes one-hot rows; any other ``t.op_(...)`` an unknown."""
        func = call.func
        assert isinstance(func, cst.Attribute)
        attr = func.attr.value
        if not (isinstance(func.value, cst.Name) and attr.endswith("_") and not attr.startswith("_")):
            return
        name = func.value.value
        held = env.get(name)
        ctx = self.ctx
        zeros = held is not None and all(
            isinstance(v, cst.BaseExpression) and "zeros" in ctx.kinds(v, None, line=ctx.pos(call)[0]) for v in held
        )
        env[name] = ("one_hot",) if attr == "scatter_" and scatters_one(call) and zeros else None
