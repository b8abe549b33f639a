"""Realistic traffic for the demo and the benchmarks: the mix of event types of a typical account.

``traffic(rng, n)`` draws types with the weights of a typical account — sends and deliveries dominate, opens and
clicks are fewer, errors rare — and yields each as the catalogue's sample of that type (``catalog.samples``), as a
producer would send it to ingest. Everything is drawn from the ``rng`` given, so a seeded ``random.Random`` gives
the same types and messages every time (``event_date`` aside: it is "now").
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping, Sequence

from ..catalog import EventType, catalog
from ..catalog.samples import Message, sample


def _pairs(text: str) -> dict[str, float]:
    """``name=number`` pairs separated by white space."""
    return {k: float(v) for k, _, v in (item.partition("=") for item in text.split())}


# Relative frequencies: sends and deliveries dominate, then opens, clicks; errors are rare.
_WEIGHTS = _pairs("""
send=400 deliv=380 reply=0.5 uopen=60 open=90 uclick=15 click=25 confirm=0.5 confirmsub=1 unsub=1 complain=0.3
sbounce=6 hbounce=4 suppress=3 undeliv=5 read=25 glanced=20 skimmed=15 import_manual=0.3 import_file=3
import_api=8 send_sms=80 click_sms=5 uclick_sms=4 deliv_sms=75 undeliv_sms=3 unsub_sms=0.3 uopen_push=25
open_push=30 send_push=150 click_push=8 uclick_push=6 deliv_push=130 undeliv_push=4 sbounce_push=3
hbounce_push=2 unsub_api=0.5 campaign_launch=0.05 camp_error=0.02 pixel_open=20 promocode_attach=2
promocode_detach=0.3 promocode_activate=0.8 segs_add=2 segs_remove=0.5 profile_merge=0.2 profile_split=0.05
popup_post=1.5 popup_click=3 popup_error=0.1 popup_bounce=0.05 popup_close=5 popup_open=10 popup_custom=0.5
""")
# Messenger types (Telegram, WhatsApp, Viber), by the last part of their code.
_MESSENGER_WEIGHTS = _pairs("send=20 deliv=18 read=10 click=2 uclick=1.5 undeliv=1 subscribe=0.5 unsub=0.2")


def _weight(t: EventType) -> float:
    if t.code in _WEIGHTS:
        return _WEIGHTS[t.code]
    return _MESSENGER_WEIGHTS.get(t.code.rsplit("_", 1)[-1], 1.0)


def default_weights() -> dict[str, float]:
    """The relative frequency of every event type in generated traffic, by code."""
    return {t.code: _weight(t) for t in catalog().types}


def traffic(
    rng: random.Random,
    n: int,
    weights: Mapping[str, float] | None = None,
    *,
    cover_all: bool = False,
    list_ids: Sequence[int] = (1, 2, 3),
) -> Iterator[Message]:
    """``n`` events with types drawn by ``weights`` (code → relative frequency; default :func:`default_weights`).

    With ``cover_all`` the first events are one of each type, in catalogue order (``n`` must be at least the
    number of types). Unknown codes in ``weights`` raise ValueError; codes missing from it are not drawn.
    """
    w = default_weights() if weights is None else dict(weights)
    unknown = set(w) - catalog().codes
    if unknown:
        raise ValueError(f"unknown event types in weights: {sorted(unknown)}")
    codes = [c for c, x in w.items() if x > 0]
    if not codes:
        raise ValueError("weights select no event type")
    cum = list(itertools.accumulate(w[c] for c in codes))
    first: list[str] = []
    if cover_all:
        first = [t.code for t in catalog().types]
        if n < len(first):
            raise ValueError(f"cover_all needs n >= {len(first)}, got {n}")
    for i in range(n):
        code = first[i] if i < len(first) else rng.choices(codes, cum_weights=cum)[0]
        yield sample(code, rng, list_ids=list_ids)
