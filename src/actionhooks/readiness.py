"""Readiness: whether this process should be sent work, as named checks (``GET /readyz``). Each check is an async
function answering ``None`` when its part is ready, else why not; one that raises or takes longer than
``CHECK_TIMEOUT_S`` is not ready. The process's parts add their checks when they start (``service.build``: the
store, the dispatcher where the process runs one; other parts add theirs the same way), so one endpoint tells them
all. Liveness (``/healthz``) is another matter: a process that is not ready may be perfectly alive — waiting for
its database, say."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import msgspec

CHECK_TIMEOUT_S = 2.0
READY = "ok"

Check = Callable[[], Awaitable[str | None]]


class Report(msgspec.Struct, frozen=True):
    """Every check's answer: ``"ok"`` or why it is not ready."""

    ready: bool
    checks: dict[str, str]
    retry_after: int = 1


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._stopping = False

    def add(self, name: str, check: Check) -> None:
        """Add (or replace) the check called ``name``."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    def stopping(self) -> None:
        """The process is shutting down: not ready from now on, whatever the checks say."""
        self._stopping = True

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def report(self) -> Report:
        names = list(self._checks)
        answers = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        checks = dict(zip(names, answers, strict=True))
        if self._stopping:
            checks["shutdown"] = "the process is shutting down"
        ready = all(answer == READY for answer in checks.values())
        return Report(ready=ready, checks=checks, retry_after=0 if ready else math.ceil(CHECK_TIMEOUT_S))

    async def _run(self, check: Check) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                reason = await check()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}".strip()
        return READY if reason is None else reason
