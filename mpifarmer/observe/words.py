"""How figures read in status and progress lines: durations, counts, rates."""

from __future__ import annotations

__all__ = ["duration", "rate_text"]


def duration(seconds: float | None) -> str:
    """``45 s``, ``12 min 5 s``, ``5 min``, ``6 h 16 min``, ``2 d 3 h``; ``unknown`` for None."""
    if seconds is None:
        return "unknown"
    whole = int(round(max(0.0, seconds)))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def rate_text(per_min: float | None) -> str:
    """``512/min``, ``0.25/min``; ``unknown`` for None."""
    if per_min is None:
        return "unknown"
    if per_min >= 100:
        return f"{per_min:,.0f}/min"
    if per_min >= 1:
        return f"{per_min:.1f}/min"
    return f"{per_min:.2g}/min"
