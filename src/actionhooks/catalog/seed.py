"""A parser of the product owner's seed table (``event-types.ru.txt``).

The format is a loose Markdown-like table::

    Типы событий для захвата                      <- title: no "|", ignored
    В интерфейсе | В запросе | Описание |         <- header, ignored
    ---|---|---|                                  <- separator, ignored
    События Email канала | ||                     <- a section (group) title: only the first cell is filled
    Send | send | Email сообщение отправлено ... | <- a row: interface name | code | description |
    *Организация Meta ...                         <- a footnote after the table: no "|", ignored

A row whose line does not end with ``|`` continues on the following line(s) until one does; the pieces are
joined with a space and the cells stripped. Descriptions are kept exactly as written (typos included).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..errors import SeedError

_HEADER = ("В интерфейсе", "В запросе", "Описание")


class SeedRow(NamedTuple):
    """One event type as the seed states it."""

    group_ru: str
    name: str
    code: str
    description_ru: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.rstrip().removesuffix("|").split("|")]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Table lines with continuations joined, each with the number of its first physical line."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if pending is not None:
            if line:
                pending = (pending[0], pending[1] + " " + line)
            if pending[1].endswith("|"):
                out.append(pending)
                pending = None
            continue
        if not line or "|" not in line:
            continue  # blank, the title, or the footnote
        if line.endswith("|"):
            out.append((number, line))
        else:
            pending = (number, line)
    if pending is not None:
        raise SeedError(f"line {pending[0]}: table row is never closed with '|'")
    return out


def parse_seed(text: str) -> list[SeedRow]:
    """The seed's event types, in order, each with the title of the section it is listed under."""
    rows: list[SeedRow] = []
    group: str | None = None
    for number, line in _logical_lines(text):
        cells = _cells(line)
        if tuple(cells) == _HEADER or all(set(c) <= {"-", ":"} and c for c in cells):
            continue
        if cells[0] and not any(cells[1:]):
            group = cells[0]
            continue
        if len(cells) != 3 or not all(cells):
            raise SeedError(f"line {number}: expected 'name | code | description |', got {line!r}")
        if group is None:
            raise SeedError(f"line {number}: event type before any section title")
        name, code, description = cells
        rows.append(SeedRow(group, name, code, description))
    return rows


def read_seed(path: str | Path) -> list[SeedRow]:
    """Parse the seed file at ``path`` (UTF-8)."""
    return parse_seed(Path(path).read_text(encoding="utf-8"))
