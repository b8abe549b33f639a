"""The store's threads and connections: one writer thread owns the only writing connection (appends, hooks,
delivery state); a few reader threads own read-only work. Each thread keeps its own connection. Async callers hop
to them with ``run_in_executor``; a unit of work is a function of the thread's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .dialect import Connection, Dialect
from .faults import WriteFaults

T = TypeVar("T")


class Runtime:
    def __init__(self, dialect: Dialect, readers: int = 3) -> None:
        self.dialect = dialect
        self.faults = WriteFaults()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(readers, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on the writer thread (writes run one at a time, in the order submitted)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._run_write, work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a reader thread (it must not write)."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._run, work, False)

    def _run_write(self, work: Callable[[Connection], T]) -> T:
        self.faults.check()
        return self._run(work, True)

    def _run(self, work: Callable[[Connection], T], writer: bool) -> T:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect(writer=writer)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return work(conn)

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
