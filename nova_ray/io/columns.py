"""Input column names as the readers expect them."""

from __future__ import annotations

from collections.abc import Iterable


def canonical_columns(columns: Iterable[object], known: Iterable[str]) -> list[str]:
    """Column names stripped, and a known name written in other case (`Item_ID`, `DATE`) as the
    reader expects it, unless two columns differ only in case (then neither is renamed)."""
    names = [str(c).strip() for c in columns]
    by_lower = {k.lower(): k for k in known}
    lowered = [n.lower() for n in names]
    return [
        by_lower[low] if low in by_lower and lowered.count(low) == 1 else n
        for n, low in zip(names, lowered, strict=True)
    ]
