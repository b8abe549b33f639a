"""``actionhooks demo``, the README's first command: in-process, and as the real command a newcomer runs."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from actionhooks.devtools.demo import run_demo

SUMMARY = "every acknowledged event was delivered"


async def test_demo_delivers_every_acknowledged_event_of_all_types(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=120)

    result = await run_demo(duration=2, rate=2000, db=f"sqlite:///{tmp_path}/demo.db", console=console)

    assert result.delivered >= result.acknowledged > 0
    assert result.sent == result.acknowledged
    assert result.types_seen == 80
    text = out.getvalue()
    assert SUMMARY in text
    assert "delivery attempts" in text


def test_demo_command_exits_cleanly(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "actionhooks"
    done = subprocess.run(
        [str(command), "demo", "--duration", "2", "--rate", "1000", "--db", f"sqlite:///{tmp_path}/d.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert SUMMARY in done.stdout
    assert done.stderr == ""
