"""Storage engines behind one interface (:class:`~actionhooks.store.base.Store`)."""

from __future__ import annotations

import os

from ..errors import ConfigError
from .base import Attempt, DeadLetter, Page, Store, StoredHook

__all__ = ["Attempt", "DeadLetter", "Page", "Store", "StoredHook", "open_store"]


def open_store(url: str) -> Store:
    """A store for ``url``: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://…`` (whose log
    partitions span ``ACTIONHOOKS_LOG_PARTITION_EVENTS`` positions; every process appending reads it).
    Call ``await store.open()`` before use."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        path = url[len("sqlite:///") :]
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):  # a typo in the path: said at once, not after a try to open it
            raise ConfigError(f"database URL {url!r}: the folder {folder} does not exist")
        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from ..config import env_int
        from .partitions import DEFAULT_PARTITION_EVENTS
        from .postgres import PostgresStore

        return PostgresStore(url, env_int("ACTIONHOOKS_LOG_PARTITION_EVENTS", DEFAULT_PARTITION_EVENTS, 1000))
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://…")
