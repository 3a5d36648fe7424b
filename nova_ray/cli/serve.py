"""`nova-ray serve`: the read-only HTTP API over the latest published run."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import config_or_exit, fail, folder_or_exit


@app.command("serve")
def serve(
    results: str = typer.Option(None, "--results", help="A sync target or a results folder: DIR or "
                                "s3://bucket/prefix (default data/ml_results, i.e. paths.output)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="TCP port."),
    endpoint_url: str = typer.Option(None, "--endpoint-url",
                                     help="S3-compatible endpoint, e.g. http://minio:9000 (default: "
                                     "\\[publish] endpoint_url, else AWS_ENDPOINT_URL_S3, else "
                                     "AWS_ENDPOINT_URL)."),
    poll_seconds: float = typer.Option(5.0, "--poll-seconds", min=0.1, max=86_400.0,
                                       help="How often to check the pointer for a new run (seconds, at most "
                                       "a day)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
    cors_origin: list[str] = typer.Option(None, "--cors-origin", metavar="ORIGIN",
                                          envvar="NOVA_RAY_SERVE_CORS_ORIGINS",
                                          help="A browser origin allowed to read the API, e.g. "
                                          "https://dash.example.com (repeatable; * for any; none by "
                                          "default)."),
    config: str = typer.Option(None, "--config", help="Config TOML (default configs/default.toml).",
                               envvar="NOVA_RAY_CONFIG"),
) -> None:
    """Serve /health and /api/v1/{forecasts,recommendations,metrics,items}; swaps to new runs live."""
    from ..io.location import PublishError, open_location
    from ..serve.app import cors_origins
    from ..serve.app import serve as run_server

    try:
        cors = cors_origins(",".join(cors_origin or []))
    except ValueError as exc:
        fail(f"--cors-origin: {exc}")
    cfg = config_or_exit(config, {})
    source = results or cfg.paths.output
    endpoint_url = endpoint_url or cfg.publish.endpoint_url or None
    try:
        loc = open_location(source, endpoint_url)
    except PublishError as exc:
        fail(str(exc))
    if loc.is_local:
        folder_or_exit(loc.base, f"--results {source}")
    if loc.is_local and not Path(loc.base).is_dir():
        fail(f"--results {source}: no such folder")
    run_server(source, host=host, port=port, endpoint_url=endpoint_url, poll_seconds=poll_seconds,
               access_log=access_log, cors=cors)
