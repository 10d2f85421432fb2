"""Following a value across the calls of one file, back to what made it.

A loss's input or target is often made far from the loss call: at the end of a model's
``forward`` (``return torch.sigmoid(x)``), in another method (``VAE.decode``) whose result
``forward`` returns as one element of a tuple (``return self.decode(z), mu, logvar``), in a helper
function or a generator (``yield inputs, labels`` with one-hot ``labels``), or it reaches the loss
through a parameter (``def loss_function(recon_x, x, mu, logvar)``, called with the model's
output). :func:`origin` follows such a value back, within the file, and answers with an
:class:`Origin` -- the activation or one-hot that made it, and where -- or None.

It is conservative, so that an answer is always true: every ``return`` of a function (every
``yield`` of a generator, every call site of a function whose parameter is followed) must give
the same answer; a name assigned on only some paths (``if not self.training: x = softmax(x)``),
in a loop or ``try`` body, changed in place or rebound later is unknown; so is a
``self.<attr>`` module assigned more than once (``self.head = nn.Identity()`` ... ``self.head =
nn.Softmax(1)``), and anything imported from another file (except a function whose name says it
makes one-hot vectors: ``to_onehot``, ``to_categorical``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import libcst as cst

from losskit.lint.engine import Context
from losskit.lint.flow_scope import Bindings, Body, Each, Env, Item, Value, Walk
from losskit.lint.names import TO_TENSOR, TRANSPARENT, dotted

__all__ = ["Origin", "origin", "WANTED"]

#: what :func:`origin` reports; "zeros" and "float_cast" are only steps on the way
WANTED = frozenset({"softmax", "sigmoid", "log_softmax", "one_hot"})
_ACTIVATIONS = frozenset({"softmax", "sigmoid", "log_softmax"})
_DATA_PARALLEL = {"torch.nn.parallel.data_parallel", "torch.nn.parallel.data_parallel.data_parallel"}
#: a function of another file whose name says it returns one-hot vectors (not ``onehot_to_word``)
_ONE_HOT_NAME = re.compile(r"(^|_)(one_?hot|categorical)(_encod(e|ed|ing))?$")  # not a class: Categorical
_DEPTH = 14
_PICK_FUNCTIONS = {"torch.gather", "torch.masked_select", "torch.index_select", "torch.take_along_dim"}
_PICK_METHODS = {"gather", "masked_select", "index_select", "take_along_dim"}


@dataclass(frozen=True)
class Origin:
    """What made a value: ``kind`` ("softmax", "sigmoid", "log_softmax", "one_hot"), applied in
    ``function`` of this file (``"Net.forward"``; "" when it is applied inline), whose last
    ``return`` is on ``line``; ``element`` when the value is one element of the tuple that function
    returns or yields; ``via`` the parameter through which it reached the loss."""

    kind: str
    function: str = ""
    line: int = 0
    element: int | None = None
    via: str = ""
    yields: bool = False

    def describe(self, ctx: Context) -> str:
        """``Net.forward (line 18) ends in softmax``; in a notebook (whose lines are the joined
        cells') without the line."""
        output = "one-hot vectors" if self.kind == "one_hot" else f"{self.kind} output"
        where = self.function + ("" if ctx.path.endswith(".ipynb") or not self.line else f" (line {self.line})")
        if not self.function:
            text = f"the argument passed as {self.via!r} is {output}" if self.via else f"this is {output}"
            return text
        verb = "yields" if self.yields else "returns"
        if self.element is not None:
            text = f"{where} {verb} {output} (element {self.element} of its result)"
        elif self.kind == "one_hot" or self.yields:
            text = f"{where} {verb} {output}"
        else:
            text = f"{where} ends in {self.kind}"
        return text + (f", which reaches this call as the parameter {self.via!r}" if self.via else "")


def origin(ctx: Context, expr: cst.BaseExpression, scope: cst.CSTNode | None) -> Origin | None:
    """What made ``expr`` (an expression of ``scope``: a function, or None for the module)."""
    return _flow(ctx).value(expr, scope, ctx.pos(expr)[0], 0, None)


# --------------------------------------------------------------------------- per-file tables


def _flow(ctx: Context) -> _Flow:
    flow = ctx.cache.get("flow")
    if flow is None:
        flow = ctx.cache["flow"] = _Flow(ctx)
    return flow


class _Flow:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.bodies: dict[cst.FunctionDef, Body] = {}
        self.sites: dict[cst.FunctionDef, list[tuple[cst.Call, cst.CSTNode | None]]] = {}
        self.active: set[tuple[int, int | None, str]] = set()
        collector = Bindings(ctx)
        self.bindings, self.defs, self.owner = collector.bindings, collector.defs, collector.owner

    # ------------------------------------------------------------------ helpers

    def peel(self, expr: cst.BaseExpression) -> cst.BaseExpression:
        """``x`` for ``Variable(torch.from_numpy(x)).float().view(n, -1).data``."""
        for _ in range(12):
            if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
                expr = expr.value
            elif (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value in TRANSPARENT
            ):
                expr = expr.func.value
            elif isinstance(expr, cst.Call) and expr.args and self.ctx.names(expr.func) & TO_TENSOR:
                expr = expr.args[0].value
            else:
                break
        return expr

    def body(self, fn: cst.FunctionDef) -> Body:
        if fn not in self.bodies:
            self.bodies[fn] = Walk(self.ctx, self.peel).run(fn)
        return self.bodies[fn]

    def def_at(self, name: str, line: int) -> cst.FunctionDef | None:
        """The module-level function ``name`` as defined when ``line`` runs (a notebook may
        define it twice): the last definition before the line, else the only one."""
        defs = self.defs.get(name, [])
        before = [fn for ln, fn in defs if ln < line]
        return before[-1] if before else (defs[0][1] if len(defs) == 1 else None)

    def method(self, cls: cst.ClassDef, name: str) -> tuple[cst.FunctionDef, cst.ClassDef] | None:
        for c in self.ctx.class_and_bases(cls):
            for s in c.body.body:
                if isinstance(s, cst.FunctionDef) and s.name.value == name:
                    return s, c
        return None

    def instance_class(self, expr: cst.BaseExpression, scope: cst.CSTNode | None, line: int) -> cst.ClassDef | None:
        """The class of this file that ``model`` / ``self.model`` / ``Net()`` is an instance of."""
        ctx = self.ctx
        if isinstance(expr, cst.Name) and expr.value == "self":
            return ctx.class_at(line)
        if isinstance(expr, cst.Call):
            bound: cst.BaseExpression | None = ctx.module_behind(expr)
        else:
            key = dotted(expr)
            if key is None:
                return None
            if key.startswith("self.") and len(ctx.self_values(key, line)) > 1:
                return None  # assigned twice: which one?
            bound = ctx.module_behind(ctx.resolve(key, scope, line) or ctx.resolve_anywhere(key, line))
        return ctx.local_class(bound) if isinstance(bound, cst.Call) else None

    def binding(
        self, name: str, scope: cst.CSTNode | None, line: int
    ) -> tuple[int, Value | None, cst.CSTNode | None] | str | None:
        """The value last bound to ``name`` before ``line`` (in ``scope``, then the module), or
        "param" for a parameter of ``scope`` not rebound before ``line``."""
        ctx = self.ctx
        keys: list[cst.CSTNode | None] = [scope] if scope is None else [scope, None]
        for where in keys:
            found: list[tuple[int, Value | None]] = [
                (ln, v) for ln, v in ctx.assignments.get((where, name), []) if ln < line
            ]
            found += [(ln, v) for ln, v in self.bindings.get((where, name), []) if ln < line]
            if found:
                ln, value = max(found, key=lambda lv: lv[0])
                return ln, value, where
            if where is not None and isinstance(where, cst.FunctionDef) and name in _params(where):
                return "param"
        if scope is not None:  # a function reading a module-level name assigned later in the file
            later = ctx.assignments.get((None, name), [])
            if later:
                ln, value = later[-1]
                return ln, value, None
        return None

    # ------------------------------------------------------------------ following

    def value(
        self, v: Value | None, scope: cst.CSTNode | None, line: int, depth: int, env: Env | None
    ) -> Origin | None:
        if v is None or depth > _DEPTH:
            return None
        if isinstance(v, str):
            return Origin(v) if v in WANTED else None
        if isinstance(v, Item):
            return self.item(v.source, v.index, scope, line, depth + 1, env)
        if isinstance(v, Each):
            return self.each(v.source, None, scope, line, depth + 1, env)
        expr = self.peel(v)
        picked = _picked_from(self.ctx, expr)
        if picked is not None:  # torch.gather(p, 1, idx), p.masked_select(m): still probabilities
            found = self.value(picked, scope, line, depth + 1, env)
            return found if found is not None and found.kind in _ACTIVATIONS else None
        if isinstance(expr, cst.Call):
            return self.call(expr, None, scope, line, depth + 1)
        if isinstance(expr, cst.Name):
            return self.name(expr.value, scope, line, depth + 1, env)
        if isinstance(expr, cst.Subscript):
            index = _int_index(expr)
            if index is not None:
                return self.item(expr.value, index, scope, line, depth + 1, env)
            found = self.value(expr.value, scope, line, depth + 1, env)  # p[mask], p[:, 0], onehot[i:j]
            return found if found is not None and (found.kind in _ACTIVATIONS or _rows(expr)) else None
        return None

    def name(self, name: str, scope: cst.CSTNode | None, line: int, depth: int, env: Env | None) -> Origin | None:
        if env is not None and name in env:
            held = env[name]
            return None if held is None else _agree(self.value(v, scope, line, depth, env) for v in held)
        bound = self.binding(name, scope, line)
        if bound == "param":
            assert isinstance(scope, cst.FunctionDef)
            return self.parameter(name, scope, depth)
        if not isinstance(bound, tuple):
            return None
        ln, value, where = bound
        if where is scope and self.ctx.rebound_between(name, ln, line):
            return None  # rebound, or changed in place, after that assignment
        return self.value(value, where, ln, depth, None)

    def parameter(self, name: str, fn: cst.FunctionDef, depth: int) -> Origin | None:
        """The parameter ``name`` of ``fn``: what every call of ``fn`` in this file passes."""
        params = _params(fn)
        position = params.index(name)
        method = fn in self.owner
        if method:
            position -= 1  # self
        results = []
        sites = self.call_sites(fn)
        if not sites:
            return None
        for call, scope in sites:
            arg = _argument(call, name, position)
            if arg is None:
                return None  # the default, or *args / **kwargs
            found = self.value(arg, scope, self.ctx.pos(call)[0], depth + 1, None)
            if found is None:
                return None
            results.append(found)
        found = _agree(results)
        return replace(found, via=name) if found is not None else None

    def call_sites(self, fn: cst.FunctionDef) -> list[tuple[cst.Call, cst.CSTNode | None]]:
        if fn not in self.sites:
            name = fn.name.value
            cls = self.owner.get(fn)
            sites = []
            for call, scope in self.ctx.calls:
                func = call.func
                line = self.ctx.pos(call)[0]
                if cls is None and isinstance(func, cst.Name) and func.value == name:
                    if self.def_at(name, line) is fn:
                        sites.append((call, scope))
                elif (
                    cls is not None
                    and isinstance(func, cst.Attribute)
                    and func.attr.value == name
                    and isinstance(func.value, cst.Name)
                    and func.value.value == "self"
                    and self.ctx.class_at(line) is cls
                ):
                    sites.append((call, scope))
            self.sites[fn] = sites
        return self.sites[fn]

    def callee(
        self, func: cst.BaseExpression, scope: cst.CSTNode | None, line: int
    ) -> tuple[cst.FunctionDef, cst.ClassDef | None] | str | None:
        """The function of this file a call runs: a model's ``forward``, a method, a function;
        or, for a function of another file, its name."""
        if isinstance(func, cst.Attribute) and func.attr.value == "forward":
            func = func.value  # model.forward(x)
        cls = self.instance_class(func, scope, line)
        if cls is not None:
            return self.method(cls, "forward")
        if isinstance(func, cst.Attribute):
            owner = self.instance_class(func.value, scope, line)
            if owner is not None:
                found = self.method(owner, func.attr.value)
                if found is not None:
                    return found
                return None
            return func.attr.value if not self.ctx.names(func) or not dotted(func) else None
        if isinstance(func, cst.Name):
            fn = self.def_at(func.value, line)
            if fn is not None:
                return fn, None
            return func.value
        return None

    def call(
        self, call: cst.Call, index: int | None, scope: cst.CSTNode | None, line: int, depth: int
    ) -> Origin | None:
        ctx = self.ctx
        func = call.func
        if index is None:
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value != "self":
                owner = self.instance_class(func.value, scope, line)
                if owner is not None and self.method(owner, func.attr.value) is None:  # model.head(x)
                    values = ctx.assignments.get((owner, f"self.{func.attr.value}"), [])
                    module = ctx.activation_module(ctx.module_behind(values[-1][1])) if len(values) == 1 else None
                    return Origin(next(iter(module))) if module and len(module) == 1 else None
            key = dotted(func)
            if not (key and key.startswith("self.") and len(ctx.self_values(key, line)) > 1):
                kinds = ctx.kinds(call, scope, line) & WANTED
                if len(kinds) == 1:
                    return Origin(next(iter(kinds)))
        if ctx.names(func) & _DATA_PARALLEL and call.args:  # nn.parallel.data_parallel(module, x)
            func = call.args[0].value
            key = dotted(func)
            module = ctx.activation_module(ctx.module_behind(ctx.resolve_anywhere(key, line))) if key else None
            if index is None and module and len(module) == 1:
                return Origin(next(iter(module)))
        target = self.callee(func, scope, line)
        if isinstance(target, str):
            return Origin("one_hot", target) if index is None and _ONE_HOT_NAME.search(target) else None
        if target is None:
            return None
        fn, cls = target
        found = self.results(fn, cls, index, depth, yields=False)
        if found is None and index is None and _ONE_HOT_NAME.search(fn.name.value):
            return Origin("one_hot", fn.name.value, ctx.pos(fn)[0])
        return found

    def results(
        self, fn: cst.FunctionDef, cls: cst.ClassDef | None, index: int | None, depth: int, yields: bool
    ) -> Origin | None:
        """What every ``return`` (with ``yields``: every ``yield``) of ``fn`` gives, or element
        ``index`` of it."""
        key = (id(fn), index, "y" if yields else "r")
        if key in self.active:
            return None  # recursion
        self.active.add(key)
        try:
            body = self.body(fn)
            if yields:
                outs = body.yields
            else:
                outs = [] if body.yields else body.returns
            if not outs:
                return None
            results = []
            for line, value, env in outs:
                if value is None:
                    return None
                part: Value = value
                if index is not None:
                    if isinstance(value, (cst.Tuple, cst.List)):
                        if index >= len(value.elements) or any(
                            isinstance(e, cst.StarredElement) for e in value.elements
                        ):
                            return None
                        part = value.elements[index].value
                    else:
                        part = Item(value, index)
                found = self.value(part, fn, line, depth + 1, env)
                if found is None:
                    return None
                results.append(found)
            found = _agree(results)
            if found is None or found.function:
                return found
            name = f"{cls.name.value}.{fn.name.value}" if cls is not None else fn.name.value
            return replace(found, function=name, line=outs[-1][0], element=index, yields=yields)
        finally:
            self.active.discard(key)

    def item(
        self, source: Value, index: int, scope: cst.CSTNode | None, line: int, depth: int, env: Env | None
    ) -> Origin | None:
        if depth > _DEPTH or isinstance(source, str):
            return None
        if isinstance(source, Item):
            inner = source.source
            if isinstance(inner, Each) and isinstance(inner.source, cst.Call):
                names = _builtin(inner.source)
                args = inner.source.args
                if names == "enumerate" and source.index == 1 and args:  # for i, (x, y) in enumerate(g)
                    return self.item(Each(args[0].value), index, scope, line, depth + 1, env)
                if names == "zip" and source.index < len(args):  # for (a, b), c in zip(g, h)
                    return self.item(Each(args[source.index].value), index, scope, line, depth + 1, env)
            return None
        if isinstance(source, Each):
            return self.each(source.source, index, scope, line, depth + 1, env)
        expr = self.peel(source)
        if isinstance(expr, (cst.Tuple, cst.List)):
            if index < len(expr.elements) and not isinstance(expr.elements[index], cst.StarredElement):
                return self.value(expr.elements[index].value, scope, line, depth + 1, env)
            return None
        if isinstance(expr, cst.Call):
            return self.call(expr, index, scope, line, depth + 1)
        if isinstance(expr, cst.Name):
            if env is not None and expr.value in env:
                held = env[expr.value]
                return None if held is None else _agree(self.item(v, index, scope, line, depth + 1, env) for v in held)
            bound = self.binding(expr.value, scope, line)
            if isinstance(bound, tuple) and bound[1] is not None:
                return self.item(bound[1], index, bound[2], bound[0], depth + 1, None)
        return None

    def each(
        self, source: Value, index: int | None, scope: cst.CSTNode | None, line: int, depth: int, env: Env | None
    ) -> Origin | None:
        """An item (or element ``index`` of an item) of iterating over ``source``: a generator of
        this file (``for x, y in self.batches()``)."""
        if not isinstance(source, cst.BaseExpression):
            return None
        expr = self.peel(source)
        if isinstance(expr, cst.Call):
            if _builtin(expr) == "iter" and expr.args:
                return self.each(expr.args[0].value, index, scope, line, depth + 1, env)
            target = self.callee(expr.func, scope, line)
            if isinstance(target, tuple):
                return self.results(target[0], target[1], index, depth + 1, yields=True)
        elif isinstance(expr, cst.Name):
            bound = self.binding(expr.value, scope, line)
            if isinstance(bound, tuple) and isinstance(bound[1], cst.Call):
                return self.each(bound[1], index, bound[2], bound[0], depth + 1, None)
        return None


# --------------------------------------------------------------------------- small helpers


def _params(fn: cst.FunctionDef) -> list[str]:
    p = fn.params
    return [a.name.value for a in (*p.posonly_params, *p.params, *p.kwonly_params)]


def _argument(call: cst.Call, name: str, position: int) -> cst.BaseExpression | None:
    positional = []
    for a in call.args:
        if a.star:
            return None
        if a.keyword is None:
            positional.append(a.value)
        elif a.keyword.value == name:
            return a.value
    return positional[position] if 0 <= position < len(positional) else None


def _int_index(expr: cst.Subscript) -> int | None:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    value = expr.slice[0].slice.value
    return int(value.value) if isinstance(value, cst.Integer) else None


def _rows(expr: cst.Subscript) -> bool:
    """``t[i]`` / ``t[i:j]``: whole rows of a one-hot matrix are one-hot rows."""
    return len(expr.slice) == 1


def _picked_from(ctx: Context, expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """``p`` for ``torch.gather(p, 1, idx)`` / ``p.gather(1, idx)`` / ``p.masked_select(m)`` /
    ``p.index_select(0, i)``: elements picked from ``p`` keep what ``p`` is."""
    if not isinstance(expr, cst.Call):
        return None
    func = expr.func
    if ctx.names(func) & _PICK_FUNCTIONS and expr.args:
        return expr.args[0].value
    if isinstance(func, cst.Attribute) and func.attr.value in _PICK_METHODS and not ctx.names(func):
        return func.value
    return None


def _builtin(call: cst.Call) -> str:
    return call.func.value if isinstance(call.func, cst.Name) else ""


def _agree(results: Iterable[Origin | None]) -> Origin | None:
    """The common answer of every path, or None."""
    first: Origin | None = None
    for r in results:
        if r is None or (first is not None and r.kind != first.kind):
            return None
        first = first or r
    return first
