"""The run report: one self-contained HTML file from a published run's tables and the demand history.

`load_run` reads a run (the `nova_ray.io.results` layout) and its demand history (`runs.py`);
`render_report` is pure: tables in, HTML text out (`render.py`). Charts are matplotlib PNGs embedded
as base64 and the styling is inline CSS, so the file opens offline and has no JavaScript. No Ray.
"""

from .render import item_chart, render_report, write_report
from .runs import (
    ReportError,
    RunTables,
    find_record,
    fmt,
    infer_freq,
    item_errors,
    leaderboard,
    load_run,
    pct,
    read_history,
    select_items,
    sort_recommendations,
)

__all__ = [
    "ReportError",
    "RunTables",
    "find_record",
    "fmt",
    "infer_freq",
    "item_chart",
    "item_errors",
    "leaderboard",
    "load_run",
    "pct",
    "read_history",
    "render_report",
    "select_items",
    "sort_recommendations",
    "write_report",
]
