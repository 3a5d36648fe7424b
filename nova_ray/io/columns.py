"""Input column names as the readers expect them."""

from __future__ import annotations

from collections.abc import Iterable


def parse_renames(text: str) -> dict[str, str]:
    """`[paths] columns` ("codigo_item=item_id, data=date") as {file's name (lower case): name
    nova-ray reads}; ValueError naming the bad pair."""
    out: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"expected FILE_NAME=NAME pairs separated by commas, got {pair!r}")
        out[src.strip().lower()] = dst.strip()
    return out


def canonical_columns(columns: Iterable[object], known: Iterable[str], renames: str = "") -> list[str]:
    """Column names stripped, renamed by `renames` (`[paths] columns`: the file's name in any
    case), and a known name written in other case (`Item_ID`, `DATE`) as the reader expects it,
    unless two columns differ only in case (then neither is renamed)."""
    mapping = parse_renames(renames) if renames else {}
    names = [mapping.get(str(c).strip().lower(), str(c).strip()) for c in columns]
    by_lower = {k.lower(): k for k in known}
    lowered = [n.lower() for n in names]
    return [
        by_lower[low] if low in by_lower and lowered.count(low) == 1 else n
        for n, low in zip(names, lowered, strict=True)
    ]


def clashing_columns(original: Iterable[object], canonical: Iterable[str], known: Iterable[str]) -> str:
    """"" unless two of the file's columns read as one known name (a rename in `[paths] columns`
    onto a name the file has already, "data=date" beside a `date` column; names equal once
    stripped): then which they are."""
    pairs = list(zip((str(c).strip() for c in original), canonical, strict=True))
    for name in known:
        same = [o for o, c in pairs if c == name]
        if len(same) > 1:
            return (f"columns {' and '.join(repr(o) for o in same)} both read as {name!r}: keep one "
                    "(rename or drop the other in the file, or change [paths] columns)")
    return ""


# what exports (Portuguese ERPs included) call the required columns: suggested, never assumed
ALIASES = {
    "item_id": ("codigo_item", "cod_item", "codigo", "código", "item", "material", "sku", "produto", "part"),
    "date": ("data", "dia", "data_movimento", "dt", "day"),
    "quantity": ("quantidade", "qtd", "qtde", "quant", "consumo", "qty"),
    "on_hand": ("saldo", "estoque", "em_estoque", "stock"),
    "lead_time_days": ("prazo_entrega", "prazo", "lead_time", "leadtime"),
}


def missing_columns(columns: Iterable[object], required: Iterable[str]) -> str:
    """"" when every required column is there, else "missing column(s) ... (found: ...)" with the
    renames that would fix it where a found column is a known name for a missing one."""
    names = [str(c) for c in columns]
    missing = [c for c in required if c not in names]
    if not missing:
        return ""
    lowered = {n.strip().lower(): n for n in names}
    renames = []
    for m in missing:
        found = next((lowered[a] for a in ALIASES.get(m, ()) if a in lowered), None)
        if found is not None:
            renames.append(f"{found} -> {m}")
    listed = ", ".join(repr(c) for c in missing)
    text = (f"missing column{'s' if len(missing) > 1 else ''} {listed} "
            f"(found: {', '.join(names) or 'none'})")
    if not renames:
        return text
    pairs = ",".join(r.replace(" -> ", "=") for r in renames)
    return text + f"; rename {', '.join(renames)} (in the file, or [paths] columns = \"{pairs}\")"
