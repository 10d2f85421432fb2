"""Peak resident memory of this process, for the benchmarks (Linux: ``/proc/self``)."""

from __future__ import annotations


def kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``: resident now, ``VmHWM``: its high-water mark)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset the high-water mark to the current resident set; return that set in bytes."""
    before = kib("VmRSS") * 1024
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return before


def peak_above(before: int) -> int:
    """Bytes of the high-water mark above ``before`` (what :func:`reset_peak` returned)."""
    return kib("VmHWM") * 1024 - before
