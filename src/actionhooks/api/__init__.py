"""The HTTP API: ingest (``POST /v1/events``) and the admin routes (hooks, attempts, dead letters, catalogue)."""

from .app import create_app

__all__ = ["create_app"]
