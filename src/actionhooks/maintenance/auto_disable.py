"""Auto-disable: a hook whose deliveries have failed without a single success for ``disable_after_s``
(``ACTIONHOOKS_DISABLE_AFTER_S``, 3 days) is stopped, with ``disabled_reason`` and ``disabled_at``, and a
``hook.disabled`` operational event goes to its account's log (docs/delivery.md#auto-disable).

A hook is failing while its newest outcome is a failure (``last_error`` set). Its streak is its failed attempts
(retried or dead-lettered) after its last delivered batch — or after its last edit, whichever is later: an edit
(a fixed URL) or a resume starts the clock again. It is stopped once the streak's first attempt is
``disable_after_s`` old. The stop is conditional on the hook's generation, so an edit made meanwhile wins.
Runs in the background jobs' round, under their lease: in one process of those sharing a database.
"""

from __future__ import annotations

import logging
import time

from .. import operational
from ..errors import ActionhooksError, StoreUnavailable
from ..registry import HookRegistry
from ..store.base import Store

log = logging.getLogger(__name__)


async def disable_failing(
    store: Store, hooks: HookRegistry, disable_after_s: float, now: float | None = None
) -> list[int]:
    """Stop every hook failing for ``disable_after_s`` or longer at ``now``; the ids of those stopped."""
    now = time.time() if now is None else now
    stopped = []
    for failing in await store.failing_hooks():
        since = max(failing.last_success_at or 0.0, failing.updated_at)
        if now - since < disable_after_s:
            continue  # delivered or edited within the window: no streak can be that long (no query)
        streak = await store.failure_streak(failing.id, since, count=False)
        if streak.first_at is None or now - streak.first_at < disable_after_s:
            continue
        try:
            hook = await hooks.load_hook(failing.id)
        except StoreUnavailable:
            raise
        except ActionhooksError:  # unreadable settings: the dispatcher reports it; nothing to stop
            continue
        if hook is None or not hook.spec.active or hook.generation != failing.generation:
            continue
        streak = await store.failure_streak(failing.id, since)  # counted once, for the notice
        if streak.first_at is None:
            continue
        reason = (
            f"deliveries failed without a success for {now - streak.first_at:.0f} s"
            f" ({streak.attempts} failed attempts since {operational.rfc3339(streak.first_at)}): {hook.last_error}"
        )
        disabled = await hooks.disable_hook(hook, reason, now)
        if disabled is None:
            continue  # edited or stopped meanwhile
        stopped.append(hook.id)
        log.warning("hook %s disabled: %s", hook.id, reason)
        event = operational.notice(
            hook.account_id,
            operational.HOOK_DISABLED,
            hook.id,
            hook.spec.name,
            now,
            reason=reason,
            failing_since=operational.rfc3339(streak.first_at),
            failed_attempts=streak.attempts,
        )
        await operational.publish(store, event)
    return stopped
