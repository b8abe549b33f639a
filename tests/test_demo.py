"""``actionhooks demo``, the README's first command: in-process, and as the real command a newcomer runs."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import urllib.request
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
        [
            *(
                str(command),
                "demo",
                "--duration",
                "2",
                "--rate",
                "1000",
                "--db",
                f"sqlite:///{tmp_path}/d.db",
            ),
            "--exit-after-traffic",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert SUMMARY in done.stdout
    assert done.stderr == ""


def test_demo_command_serves_the_console_until_ctrl_c(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "actionhooks"
    with subprocess.Popen(
        [str(command), "demo", "--duration", "1", "--rate", "500", "--db", f"sqlite:///{tmp_path}/d.db"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as demo:
        _sign_in_page_then_ctrl_c(demo)


def _sign_in_page_then_ctrl_c(demo: subprocess.Popen[str]) -> None:
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "The console:" in line:
                break
        found = re.search(
            r"(http://\S+/console/)\s.*API key (ah_\S+)", "".join(lines[-2:]).replace("\n", " ")
        )
        assert found, "".join(lines)
        with urllib.request.urlopen(found[1] + "sign-in", timeout=10) as page:
            assert page.status == 200 and "Sign in" in page.read().decode()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
