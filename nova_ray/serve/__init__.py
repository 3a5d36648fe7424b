"""Read-only HTTP serving of published runs (FastAPI). Imports neither Ray nor any model library."""

from .store import Run, RunStore

__all__ = ["Run", "RunStore"]
