"""Numbers as the README prints them, and sentences that compare two series by their displayed means."""

from __future__ import annotations


def fmt3(v: float) -> str:
    """A mean or cosine as the tables show it: three decimals."""
    return f"{v:.3f}"


def fmt_diff(v: float) -> str:
    """A signed difference with three decimals and a typographic minus."""
    return f"{v:+.3f}".replace("-", "−")


def fmt_ratio(r: float) -> str:
    """A train ratio in its shortest form (``0.1``, ``1``)."""
    return f"{r:g}"


def fmt_span(values: list[float]) -> str:
    """``0.440 to 0.499``, or one value when all are equal as displayed."""
    lo, hi = fmt3(min(values)), fmt3(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def join_and(items: list[str]) -> str:
    """``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def fmt_ratios(rs: list[float]) -> str:
    """``ratio 0.4`` or ``ratios 0.1, 0.4``."""
    return ("ratio " if len(rs) == 1 else "ratios ") + ", ".join(fmt_ratio(r) for r in rs)


def as_shown(v: float) -> float:
    """A mean as the tables display it (3 decimals), so that prose differences match the table."""
    return float(fmt3(v))


def versus(a: dict[float, float], b: dict[float, float] | float, label: str) -> str:
    """``above LABEL at every train ratio (+0.048 at 0.1, ...)``: where series ``a`` is above, level or below ``b``."""
    diffs = {r: as_shown(a[r]) - as_shown(b[r] if isinstance(b, dict) else b) for r in sorted(a)
             if not isinstance(b, dict) or r in b}
    if not diffs:
        return f"not comparable with {label} (no common train ratio)"
    groups: dict[str, list[float]] = {"above": [], "level with": [], "below": []}
    for r, d in diffs.items():
        groups["above" if round(d, 3) > 0 else "below" if round(d, 3) < 0 else "level with"].append(r)
    parts = []
    for word, rs in groups.items():
        if not rs:
            continue
        where = "at every train ratio" if len(rs) == len(diffs) and len(diffs) > 1 else f"at {fmt_ratios(rs)}"
        shown = "" if word == "level with" else " (" + ", ".join(f"{fmt_diff(diffs[r])} at {fmt_ratio(r)}" for r in rs) + ")"
        parts.append(f"{word} {'it' if parts else label} {where}{shown}")
    return join_and(parts)


def fmt_seconds(s: float) -> str:
    """``0.01 s``, ``9.4 s``, ``9 min 40 s``, ``1 h 2 min``."""
    if s < 1:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def fmt_count(n: float) -> str:
    """A count with three significant digits and a k/M/B suffix (``22.7M``)."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"
