"""A hook's delivery stats (``GET /v1/hooks/{id}/stats``) and the database's state for ``/metrics``.

Counts come from the per-hook delivery counts the store keeps in 10-second periods (every attempt adds its events
in the same transaction), so the windows are exact to 10 seconds. Lag is the events of the hook's account, event
types and ``list_id`` after its cursor (filters on ``event_data`` are not applied: an upper bound), counted up to
``LAG_COUNT_CAP``.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from .errors import ActionhooksError, StoreUnavailable
from .hooks import Matcher
from .metrics import HookSnapshot, StoreSnapshot
from .registry import Hook, HookRegistry
from .store.base import DeliveryCounts, HookQuery, Store

WINDOWS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}

HookState = Literal["delivering", "retrying", "caught_up", "stopped", "disabled"]


class HookStats(msgspec.Struct, kw_only=True, frozen=True):
    delivered: dict[str, int]  # window name → events
    failed: dict[str, int]
    dead_lettered: dict[str, int]
    expired_undelivered: int
    lag_events: int
    lag_seconds: float
    last_success_at: float | None
    last_error: str | None
    last_error_at: float | None
    state: HookState


def hook_query(hook: Hook) -> HookQuery:
    """What ``hook`` matches in the log (its filters as ``accepts`` when it has any)."""
    matcher = Matcher(hook.spec, hook.id)
    return HookQuery(
        hook.id,
        hook.account_id,
        tuple(hook.spec.event_types),
        hook.spec.list_id,
        None if matcher.trivial else matcher,
    )


async def hook_stats(store: Store, hook: Hook, now: float | None = None) -> HookStats:
    now = time.time() if now is None else now
    counts = await store.delivery_counts(hook.id, [now - w for w in WINDOWS.values()])
    activity = await store.hook_activity(hook.id)
    lag = await store.hook_lag(hook_query(hook), hook.cursor)

    def per_window(pick: int) -> dict[str, int]:
        return {name: c[pick] for name, c in zip(WINDOWS, counts, strict=True)}

    state: HookState
    if not hook.spec.active:
        state = "disabled" if hook.disabled_reason is not None else "stopped"
    elif activity.last_outcome == "retry":
        state = "retrying"
    elif lag.events:
        state = "delivering"
    else:
        state = "caught_up"
    return HookStats(
        delivered=per_window(DeliveryCounts._fields.index("delivered")),
        failed=per_window(DeliveryCounts._fields.index("failed")),
        dead_lettered=per_window(DeliveryCounts._fields.index("dead_lettered")),
        expired_undelivered=activity.expired_undelivered,
        lag_events=lag.events,
        lag_seconds=max(0.0, now - lag.oldest_received_at) if lag.oldest_received_at is not None else 0.0,
        last_success_at=activity.last_success_at,
        last_error=hook.last_error,
        last_error_at=hook.last_error_at,
        state=state,
    )


async def active_hooks(store: Store, hooks: HookRegistry) -> list[Hook]:
    """Every active hook whose settings can be read (one that cannot is the dispatcher's to report)."""
    found = []
    for hook_id in await store.active_generations():
        try:
            hook = await hooks.load_hook(hook_id)
        except StoreUnavailable:
            raise
        except ActionhooksError:
            continue
        if hook is not None and hook.spec.active:
            found.append(hook)
    return found


async def snapshot(store: Store, hooks: HookRegistry) -> StoreSnapshot:
    """The log's size and age, and each active hook's lag and events lost to retention."""
    now = time.time()
    log = await store.log_summary()
    found: dict[int, HookSnapshot] = {}
    for hook in await active_hooks(store, hooks):
        lag = await store.hook_lag(hook_query(hook), hook.cursor)
        activity = await store.hook_activity(hook.id)
        age = now - lag.oldest_received_at if lag.oldest_received_at is not None else 0.0
        found[hook.id] = HookSnapshot(lag.events, max(0.0, age), activity.expired_undelivered)
    oldest = now - log.oldest_received_at if log.oldest_received_at is not None else 0.0
    return StoreSnapshot(log.events, max(0.0, oldest), found)
