"""Tables set aside in a scratch folder a part at a time and read back whole when needed."""

from __future__ import annotations

from pathlib import Path

import polars as pl


class Spill:
    """Parts of named tables written to Parquet files in `folder` (which the caller owns and
    removes): a long loop then holds none of them, nor the buffers they would pin."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.parts: dict[str, list[Path]] = {}

    def add(self, name: str, table: pl.DataFrame) -> None:
        """Set aside one part of table `name` (an empty part is skipped)."""
        if table.height:
            paths = self.parts.setdefault(name, [])
            paths.append(self.folder / f"{name}-{len(paths):05d}.parquet")
            table.write_parquet(paths[-1])

    def scan(self, name: str) -> pl.LazyFrame | None:
        """A LazyFrame over every part of table `name` (read when queried), or None when none
        was set aside."""
        paths = self.parts.get(name)
        return pl.scan_parquet(paths) if paths else None
