"""Read-only HTTP API over the latest published run (FastAPI).

Endpoints: GET /health, /api/v1/forecasts, /api/v1/recommendations, /api/v1/metrics, /api/v1/items.
Every data response carries the `run_id` it was answered from; one response never mixes runs. Bad
parameters give 400 with a one-line `detail`; 503 until a run is loaded.

Run without the CLI (serving box): ``python -m nova_ray.serve.app --results DIR|s3://bucket/prefix``,
or ``uvicorn --factory nova_ray.serve.app:app_from_env`` with NOVA_RAY_SERVE_RESULTS set. A browser
page on another origin (a dashboard) may read the API when its origin is allowed (`cors_origins`).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from .. import __version__
from .store import MAX_POLL_SECONDS, PublishError, QueryError, Run, RunStore, dumps

Urgency = Literal["critical", "high", "medium", "ok"]  # nova_ray.recommend.URGENCY
DemandClass = Literal["smooth", "erratic", "intermittent", "lumpy", "zero"]  # nova_ray.classify.CLASSES
MAX_LIMIT = 5000
DEFAULT_LIMIT = 500
MAX_VALUES = 200  # repeated item_id values per request
TEXT = r"^[^\x00-\x1f\x7f]+$"  # printable; values are only ever compared, never used in paths
NAME = r"^[A-Za-z0-9_.-]+$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"  # only YYYY-MM-DD (a lax date also took 0 or Unix seconds)
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")  # what a browser sends as Origin


def cors_origins(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Browser origins allowed to read the API (comma-separated or a list; `*` for any), checked:
    a browser compares the Origin header with them exactly, so a path or a trailing '/' would
    never match. ValueError names the bad one."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    out = tuple(o.strip() for o in items if o.strip())
    for origin in out:
        if origin != "*" and not ORIGIN.match(origin):
            raise ValueError(f"CORS origin {origin!r}: expected scheme://host[:port] (no path, no "
                             "trailing '/'), or * for any")
    return out


class ApiError(HTTPException):
    """An HTTP error with a one-line message, about run `run_id` when the request read one."""

    def __init__(self, status_code: int, detail: str, run_id: str | None = None) -> None:
        super().__init__(status_code, detail)
        self.run_id = run_id


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=dumps(body), status_code=status, media_type="application/json", headers=headers)


REPEATABLE = frozenset({"item_id"})  # the one query parameter that may be given several times
LENIENT = frozenset({"/health"})  # monitors add cache-busting parameters: ignored there


def _reject_unknown(request: Request) -> None:
    """400 on query parameters the endpoint does not know (typos would otherwise be ignored), and
    on a single-valued one given twice (`limit=1&limit=2`: which one was meant?)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None or request.url.path in LENIENT:
        return
    known = {p.alias for p in dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise ApiError(400, f"unknown query parameter {unknown[0]!r}; accepted: {accepted}")
    for name in sorted(known - REPEATABLE):
        if len(request.query_params.getlist(name)) > 1:
            raise ApiError(400, f"query parameter {name!r} given more than once; only item_id repeats")


def _items(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    if len(values) > MAX_VALUES:
        raise ApiError(400, f"query parameter 'item_id': at most {MAX_VALUES} values")
    for v in values:
        if not v or len(v) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ApiError(400, "query parameter 'item_id': 1 to 128 printable characters")
    return values


def _page(run: Run, kind: str, found: tuple[int, pa.Table], limit: int, offset: int) -> Response:
    """One page of rows (`found`: the matches' count and the page) with the run it came from; rows
    are JSON-encoded by Polars (fast, no Python rows)."""
    total, page = found
    head = dumps({"run_id": run.run_id, "version": run.version, "generated_at": run.generated_at,
                  "freq": run.meta.get("freq"), "history_end": run.meta.get("history_end"),
                  "kind": kind, "total": total, "offset": offset, "limit": limit,
                  "count": page.num_rows})
    rows = pl.from_arrow(page).write_json().encode() if page.num_rows else b"[]"
    return Response(content=head[:-1] + b',"data":' + rows + b"}", media_type="application/json")


def _day(name: str, text: str | None, run: Run) -> date | None:
    """A YYYY-MM-DD parameter (its form already checked) as a date; 400 for a day that does not exist."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"query parameter '{name}': {text} is not a date", run.run_id) from None


ERRORS = {  # what the data endpoints answer besides 200; the body is {"detail": ..., "run_id": ...}
    "400": "A bad parameter (unknown, repeated, out of range, wrong form): the detail names it.",
    "404": "The served run has no such table (e.g. no recommendations, or no metrics without backtests).",
    "503": "No run loaded yet.",
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema FastAPI generates, with the errors this API answers: its 400s, 404s and 503s
    (FastAPI lists a 422 that never comes: validation errors are 400s here), and an operation id
    per operation (FastAPI gives GET and HEAD /health the same)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    with warnings.catch_warnings():  # GET and HEAD /health are one route, with one id: renamed below
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    seen: set[str] = set()
    for ops in schema.get("paths", {}).values():
        for method, op in ops.items():  # each operation its own id (client generators refuse others)
            if op.get("operationId") in seen:
                op["operationId"] = f"{op['operationId']}_{method}"
            seen.add(op.get("operationId"))
    error = {"application/json": {"schema": {"type": "object", "properties": {
        "detail": {"type": "string"}, "run_id": {"type": ["string", "null"]}}}}}
    for path, ops in schema.get("paths", {}).items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if path.startswith("/api/"):
                responses |= {code: {"description": text, "content": error} for code, text in ERRORS.items()}
            elif path == "/health":
                responses["503"] = {"description": ERRORS["503"]}
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema


def _validation_message(exc: RequestValidationError) -> str:
    msgs = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "body")]
        name = loc[0] if loc else "request"
        msg = err.get("msg", "invalid value")
        if err.get("type") == "string_pattern_mismatch":
            iso = (err.get("ctx") or {}).get("pattern") == ISO_DATE
            msg = "expected a date YYYY-MM-DD" if iso else "contains characters that are not allowed"
        msgs.append(f"query parameter {name!r}: {msg}")
    return "; ".join(msgs) or "invalid request"


def create_app(
    results: str | RunStore,
    *,
    endpoint_url: str | None = None,
    poll_seconds: float = 5.0,
    watch: bool = True,
    cors: tuple[str, ...] = (),
) -> FastAPI:
    """The API over `results` (a sync target or a results folder, local or s3://).

    With `watch` the pointer is polled every `poll_seconds` in a background thread while the app runs.
    `cors`: origins whose pages may read it from a browser (`cors_origins`); none by default.
    """
    store = results if isinstance(results, RunStore) else RunStore(results, endpoint_url, poll_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if watch:
            store.start()
        yield
        store.stop()

    # /openapi.json describes the API; no /docs or /redoc pages (they load scripts from the internet)
    app = FastAPI(title="nova-ray results", version=__version__, lifespan=lifespan, redirect_slashes=False,
                  dependencies=[Depends(_reject_unknown)], docs_url=None, redoc_url=None)
    app.state.store = store
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if cors:  # GET only (the data routes answer GET), no credentials: public to whoever may reach it
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET"],
                           allow_headers=[], allow_credentials=False, max_age=3600)

    def run_id() -> str | None:
        return store.current.run_id if store.current else None

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> Response:
        return _json({"detail": _validation_message(exc), "run_id": run_id()}, 400)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> Response:
        # the run the request read (the watcher may have moved on since); 405's Allow header kept
        body = {"detail": str(exc.detail), "run_id": getattr(exc, "run_id", None) or run_id()}
        return _json(body, exc.status_code, getattr(exc, "headers", None))

    def current() -> Run:
        run = store.current  # read once: the whole response comes from this run
        if run is None:
            raise ApiError(503, f"no run loaded yet ({store.last_error or 'starting'})")
        return run

    def query(run: Run, kind: str, offset: int, limit: int, **filters: Any) -> tuple[int, pa.Table]:
        if kind not in run.kinds:
            raise ApiError(404, f"run {run.run_id} has no {kind} table", run.run_id)
        df, dt = filters.get("date_from"), filters.get("date_to")
        if df is not None and dt is not None and df > dt:
            raise ApiError(400, f"date_from {df} is after date_to {dt}", run.run_id)
        try:
            return run.page(kind, offset, limit, **filters)
        except QueryError as exc:
            raise ApiError(400, str(exc), run.run_id) from None

    limit_q = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Page size (max {MAX_LIMIT}).")
    offset_q = Query(0, ge=0, le=10**9, description="Rows to skip.")
    item_q = Query(None, description="Item id; repeat for several.")
    site_q = Query(None, min_length=1, max_length=100, pattern=TEXT,
                   description="Site (via the items or recommendations table; 400 when the run has none).")

    # GET and HEAD (load balancers' health checks) on one route: another method's 405 allows both
    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        """200 with the served run, or 503 while no run is loaded."""
        return _json(store.health(), 200 if store.current is not None else 503)

    # the table endpoints are plain functions: FastAPI runs them in its thread pool, so that a
    # filter over a whole table (pyarrow, without the GIL) does not hold up other requests
    @app.get("/api/v1/forecasts")
    def forecasts(
        item_id: list[str] | None = item_q,
        site: str | None = site_q,
        model: str | None = Query(None, min_length=1, max_length=64, pattern=NAME),
        date_from: str | None = Query(None, pattern=ISO_DATE, description="First forecast date, YYYY-MM-DD."),
        date_to: str | None = Query(None, pattern=ISO_DATE, description="Last forecast date, YYYY-MM-DD."),
        limit: int = limit_q,
        offset: int = offset_q,
    ) -> Response:
        """Forecast rows (item, model, date, point forecast, interval bounds)."""
        run = current()
        t = query(run, "forecasts", offset, limit, item_ids=_items(item_id), site=site,
                  equals={"model": model}, date_from=_day("date_from", date_from, run),
                  date_to=_day("date_to", date_to, run))
        return _page(run, "forecasts", t, limit, offset)

    @app.get("/api/v1/recommendations")
    def recommendations(
        item_id: list[str] | None = item_q,
        site: str | None = site_q,
        urgency: Urgency | None = Query(None),
        limit: int = limit_q,
        offset: int = offset_q,
    ) -> Response:
        """Purchasing recommendations; 404 when the run produced none."""
        run = current()
        if "recommendations" not in run.kinds:
            raise ApiError(404, f"run {run.run_id} has no recommendations (the run did not produce a "
                                "recommendations table)", run.run_id)
        t = query(run, "recommendations", offset, limit, item_ids=_items(item_id), site=site,
                  equals={"urgency": urgency})
        return _page(run, "recommendations", t, limit, offset)

    @app.get("/api/v1/metrics")
    def metrics(
        item_id: list[str] | None = item_q,
        model: str | None = Query(None, min_length=1, max_length=64, pattern=NAME),
        limit: int = limit_q,
        offset: int = offset_q,
    ) -> Response:
        """Backtest error metrics per item, model and window."""
        run = current()
        found = query(run, "metrics", offset, limit, item_ids=_items(item_id), equals={"model": model})
        return _page(run, "metrics", found, limit, offset)

    @app.get("/api/v1/items")
    def items(
        item_id: list[str] | None = item_q,
        site: str | None = site_q,
        demand_class: DemandClass | None = Query(None),
        limit: int = limit_q,
        offset: int = offset_q,
    ) -> Response:
        """Per-item facts: demand class, models used, fallbacks."""
        run = current()
        t = query(run, "items", offset, limit, item_ids=_items(item_id), site=site,
                  equals={"demand_class": demand_class})
        return _page(run, "items", t, limit, offset)

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: NOVA_RAY_SERVE_RESULTS, NOVA_RAY_SERVE_ENDPOINT_URL,
    NOVA_RAY_SERVE_POLL_SECONDS, NOVA_RAY_SERVE_CORS_ORIGINS (comma-separated)."""
    results = os.environ.get("NOVA_RAY_SERVE_RESULTS")
    if not results:
        raise RuntimeError("set NOVA_RAY_SERVE_RESULTS to a folder or s3://bucket/prefix")
    try:
        cors = cors_origins(os.environ.get("NOVA_RAY_SERVE_CORS_ORIGINS"))
    except ValueError as exc:
        raise RuntimeError(f"NOVA_RAY_SERVE_CORS_ORIGINS: {exc}") from None
    return create_app(results, endpoint_url=os.environ.get("NOVA_RAY_SERVE_ENDPOINT_URL") or None,
                      poll_seconds=float(os.environ.get("NOVA_RAY_SERVE_POLL_SECONDS", "5")), cors=cors)


def serve(
    results: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    endpoint_url: str | None = None,
    poll_seconds: float = 5.0,
    access_log: bool = True,
    cors: tuple[str, ...] = (),
) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    log = logging.getLogger("nova_ray.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    app = create_app(results, endpoint_url=endpoint_url, poll_seconds=poll_seconds, cors=cors)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")


def main(argv: list[str] | None = None) -> None:
    """``python -m nova_ray.serve.app``: the server without the nova-ray CLI (light installs)."""
    p = argparse.ArgumentParser(prog="python -m nova_ray.serve.app", description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True, help="Sync target or results folder; DIR or s3://bucket/prefix.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint, e.g. http://minio:9000.")
    p.add_argument("--poll-seconds", type=float, default=5.0)
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--cors-origin", action="append", default=[], help="A browser origin allowed to read the "
                   "API, e.g. https://dash.example.com (repeatable; * for any).")
    a = p.parse_args(argv)
    if not 0 < a.poll_seconds <= MAX_POLL_SECONDS:  # also NaN and inf
        p.error(f"--poll-seconds must be > 0 and at most {MAX_POLL_SECONDS:.0f}")
    if not 1 <= a.port <= 65535:
        p.error(f"--port {a.port} is not one (1-65535)")
    try:
        cors = cors_origins(a.cors_origin)
    except ValueError as exc:
        p.error(f"--cors-origin: {exc}")
    if "://" not in a.results and not Path(a.results).expanduser().is_dir():  # as `nova-ray serve` does
        p.error(f"--results {a.results}: no such folder")
    try:
        serve(a.results, host=a.host, port=a.port, endpoint_url=a.endpoint_url, poll_seconds=a.poll_seconds,
              access_log=not a.no_access_log, cors=cors)
    except PublishError as exc:  # a URI it cannot serve, an endpoint that is not one: one line
        p.error(f"--results {a.results}: {exc}")


if __name__ == "__main__":
    main()
