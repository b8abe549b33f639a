"""Enrichment's cost per hook: CPU to complete the messages of a chunk of events for ``hooks`` hooks that take the
same events, each with its own ``Enricher`` and the process's shared ``ProfileCache`` (as the dispatcher has them).

Every event has a stored profile (an email and a subscription), so every message is completed from it; the
profiles come from an in-memory source (the store's query is not what is measured). The hooks ask for the same
events in turn, as the feed hands a chunk to each hook that matches it. Prints µs of CPU per event per hook for
hooks without ``custom_data_fields`` and for hooks with one each. Run it from two trees to compare them:

    PYTHONPATH=<tree>/src .venv/bin/python -m bench.enrich --events 5000 --hooks 10 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Collection

import msgspec

from actionhooks.dispatch.enrich import Enricher, ProfileCache
from actionhooks.events import LoggedEvent
from actionhooks.hooks import parse_hook
from actionhooks.profiles import StoredProfile

from .run import sample_events

PROFILE = msgspec.json.encode(
    {"email": "someone@example.com", "subscriptions": [{"channel": "email", "status": "subscribed"}]}
)


class _Profiles:
    """Every profile the events name, stored."""

    async def head(self) -> int:
        return 2**62

    async def get_profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        return {pid: StoredProfile(pid, None, PROFILE, 0.0) for pid in profile_ids}


def _events(count: int) -> list[LoggedEvent]:
    out = []
    for seq, item in enumerate(sample_events(count), 1):
        pid = f"p{seq % 1000}"
        body = msgspec.json.encode({**item, "profile_id": pid})
        list_id = item.get("list_id")
        event_type = str(item["event_type"])
        out.append(
            LoggedEvent(seq, f"e{seq}", event_type, list_id if isinstance(list_id, int) else None, pid, body)
        )
    return out


async def _per_event_per_hook(events: list[LoggedEvent], hooks: int, fields: list[str]) -> float:
    source = _Profiles()
    cache = ProfileCache(source)
    settings = {
        "name": "h",
        "event_types": ["send"],
        "transport": {"type": "http", "url": "http://127.0.0.1/"},
    }
    spec = parse_hook({**settings, "custom_data_fields": fields} if fields else settings)
    enrichers = []
    for _ in range(hooks):
        enricher = Enricher(spec, source, 1)
        enricher.cache = cache  # one cache for the hooks of this run, as for the hooks of a store
        enrichers.append(enricher)
    await enrichers[0].profiles(events)  # the profiles are read: what follows is the hooks' own work
    started = time.process_time()
    for enricher in enrichers:
        found = await enricher.profiles(events)
        for event in events:
            enricher.message(event, found)
    return (time.process_time() - started) / (len(events) * hooks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--hooks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    events = _events(args.events)
    for label, fields in (("no custom_data_fields", []), ("custom_data_fields [email]", ["email"])):
        runs = [asyncio.run(_per_event_per_hook(events, args.hooks, fields)) for _ in range(args.rounds)]
        print(
            f"{args.hooks} hooks, {label}: {statistics.median(runs):.2f} µs per event per hook"
            f" (median of {args.rounds}; {min(runs):.2f}–{max(runs):.2f})"
        )


if __name__ == "__main__":
    main()
