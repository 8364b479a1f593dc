"""How the HTML report writes values: fixed and general numbers, counts, and a dash for what is
missing. The same functions are the Jinja filters of the report's templates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "count", "fixed", "general", "is_missing", "lookup", "plain", "ratio", "short"]

MISSING = "–"  # shown for a value that is absent or NaN


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fixed(value: Any, digits: int = 4) -> str:
    return MISSING if is_missing(value) else f"{float(value):.{digits}f}"


def general(value: Any, digits: int = 6) -> str:
    return MISSING if is_missing(value) else f"{float(value):.{digits}g}"


def count(value: Any) -> str:
    return MISSING if is_missing(value) else f"{int(value):,}"


def plain(value: Any) -> str:
    """A configuration value as text: floats to six significant digits, lists comma-separated."""
    if isinstance(value, float):
        return general(value, 6)
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    return str(value)


def ratio(a: Any, b: Any) -> float | None:
    try:
        return float(a) / float(b) if b else None
    except (TypeError, ValueError):
        return None


def short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lookup(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping
