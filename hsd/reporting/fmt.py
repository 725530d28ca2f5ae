"""Number formatting shared by every report: 3 decimals, intervals in brackets, n/a for undefined.

Three decimals because a per-group rate over ~100 samples moves in steps of ~0.01; the
interval next to it says how much of that is noise.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional


def num(x: Optional[float], digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def signed(x: Optional[float], digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}"


def pct(x: Optional[float]) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def interval(iv: Optional[Mapping[str, Any]], sign: bool = False) -> str:
    """``0.683 [0.651, 0.712]`` (``+0.021 [+0.004, +0.038]`` for differences)."""
    if iv is None or iv.get("estimate") is None:
        return "n/a"
    f = signed if sign else num
    if iv.get("low") is None:
        return f(iv["estimate"])
    return f"{f(iv['estimate'])} [{f(iv['low'])}, {f(iv['high'])}]"


def rate_interval(row: Mapping[str, Any], rate: str) -> str:
    """A per-group rate with its interval, from a group row of the summary."""
    return interval({"estimate": row.get(rate), "low": row.get(f"{rate}_low"), "high": row.get(f"{rate}_high")})


def clip(text: Optional[str], n: int) -> str:
    """One line of at most ``n`` characters (long texts end with an ellipsis)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= n else flat[: n - 1] + "\u2026"
