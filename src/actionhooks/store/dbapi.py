"""The DB-API types the shared SQL is written against: parameters, rows, and the cursor and connection both
drivers give (``sqlite3`` and ``psycopg``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Param = int | float | str | bytes | bool | None | list[str]  # a list: a PostgreSQL array (``Dialect.one_of``)
Params = Sequence[Param]
Row = tuple[Any, ...]  # a fetched row: the driver's own column types


class Cursor(Protocol):
    """The DB-API cursor the shared SQL uses (``sqlite3.Cursor`` and ``psycopg.Cursor`` both are one)."""

    @property
    def rowcount(self) -> int: ...
    def execute(self, sql: str, params: Params = ..., /) -> object: ...
    def executemany(self, sql: str, rows: Iterable[Params], /) -> object: ...
    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...


class Connection(Protocol):
    def cursor(self) -> Cursor: ...
    def close(self) -> None: ...
