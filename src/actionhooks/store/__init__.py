"""Storage engines behind one interface (:class:`~actionhooks.store.base.Store`)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Attempt, DeadLetter, Page, Store, StoredHook

__all__ = ["Attempt", "DeadLetter", "Page", "Store", "StoredHook", "open_store"]


def open_store(url: str) -> Store:
    """A store for ``url``: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://…``.
    Call ``await store.open()`` before use."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://…")
