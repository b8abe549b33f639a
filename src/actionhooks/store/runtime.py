"""The store's threads and connections: one writer thread owns the only writing connection (appends, hooks,
delivery state); a few reader threads own read-only work. Each thread keeps its own connection. Async callers hop
to them with ``run_in_executor``; a unit of work is a function of the thread's connection.

Connections heal: one found broken is closed and dropped, and the next unit of work connects afresh; so is one
whose work failed in a way a retry may cure (a connection may keep state from such a failure — a full disk, an I/O
error — that a fresh one does not carry over). A read, or a write whose transaction failed to begin, is tried once
more on a fresh connection at once (nothing of it reached the database). Otherwise an error a retry may cure (the
dialect says which) is raised as ``StoreUnavailable``; while the database stays unreachable,
:class:`~.availability.Availability` makes work fail fast and spaces out the attempts to reconnect. A write cut off
after it began has an unknown outcome: ``StoreUnavailable`` too, and the caller may retry (producer ids make a
repeated append store nothing twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..errors import NotBegun
from .availability import Availability
from .dbapi import Connection
from .dialect import Dialect
from .faults import WriteFaults

T = TypeVar("T")


class Runtime:
    def __init__(self, dialect: Dialect, readers: int = 3) -> None:
        self.dialect = dialect
        self.faults = WriteFaults()
        self.availability = Availability(dialect.engine)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(readers, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._connections: set[Connection] = set()
        self._connections_lock = threading.Lock()
        self.commits = 0  # units of write work done (each one transaction): counted for the tests

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on the writer thread (writes run one at a time, in the order submitted)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._run_write, work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a reader thread (it must not write)."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._run, work, False)

    def _run_write(self, work: Callable[[Connection], T]) -> T:
        self.faults.check()
        result = self._run(work, True)
        self.commits += 1  # only the writer thread counts
        return result

    def _run(self, work: Callable[[Connection], T], writer: bool) -> T:
        self.availability.gate()
        fresh = False
        while True:
            conn: Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn, fresh = self._connect(writer), True
            try:
                result = work(conn)
            except NotBegun as exc:
                cause = exc.__cause__ or exc
                if self._broken(conn, cause) and not fresh:
                    continue  # nothing reached the database: once more on a fresh connection
                raise self._failed(conn, cause) from cause
            except Exception as exc:
                if self._broken(conn, exc) and not fresh and not writer:
                    continue  # a read: safe to repeat on a fresh connection
                failure = self._failed(conn, exc)
                if failure is exc:
                    raise
                raise failure from exc
            self.availability.succeeded()
            return result

    def _connect(self, writer: bool) -> Connection:
        try:
            conn = self.dialect.connect(writer=writer)
        except Exception as exc:
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        self._local.conn = conn
        with self._connections_lock:
            self._connections.add(conn)
        return conn

    def _broken(self, conn: Connection, exc: BaseException) -> bool:
        """Drop ``conn`` when ``exc`` says it is lost; whether it was."""
        if not self.dialect.connection_lost(exc):
            return False
        self._drop(conn)
        return True

    def _failed(self, conn: Connection, exc: BaseException) -> BaseException:
        """What to raise for ``exc`` raised on ``conn``; a connection whose work may succeed when retried is dropped
        too, so the retry starts on a fresh one."""
        failure = self._failure(exc)
        if failure is not exc:
            self._drop(conn)
        return failure

    def _drop(self, conn: Connection) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._connections_lock:
            self._connections.discard(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def _failure(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc``: ``StoreUnavailable`` when a retry may cure it, else ``exc`` itself."""
        if not self.dialect.retryable(exc):
            return exc
        return self.availability.failed(exc)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._forget)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(Exception):
                    conn.close()
            self._connections.clear()

    def _forget(self) -> None:
        self._local.conn = None
