"""Processes the benchmarks start: the service (``actionhooks serve``), a bare ASGI app, the loopback receiver."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _cpu_times() -> tuple[float, float]:
    """Busy and total jiffies of all cores since boot (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [float(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(busy_cores: float = 0.2, window_s: float = 1.0, timeout: float = 120.0) -> None:
    """Wait until the machine's cores together are busy less than ``busy_cores`` over ``window_s``: a broker still
    digesting the previous run (a quorum queue writing its segments, say) would otherwise be measured with the next
    one. Gives up with a warning after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        busy0, total0 = _cpu_times()
        time.sleep(window_s)
        busy1, total1 = _cpu_times()
        share = (busy1 - busy0) / max(total1 - total0, 1.0)
        if share * (os.cpu_count() or 1) < busy_cores:
            return
        if time.monotonic() > deadline:
            print(
                f"warning: the machine is still busy ({share:.0%} of its CPU) after {timeout:.0f} s",
                file=sys.stderr,
            )
            return


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.setdefault("ACTIONHOOKS_ALLOW_NETS", "127.0.0.0/8")
    out.update(extra)
    return out


def create_account(db: str) -> tuple[int, str]:
    done = subprocess.run(
        [str(BIN / "actionhooks"), "accounts", "create", "bench", "--db", db],
        check=True,
        capture_output=True,
        text=True,
        env=env(),
    )
    data = json.loads(done.stdout)
    return int(data["account_id"]), str(data["api_key"])


@contextlib.contextmanager
def running(cmd: list[str], port: int, **extra_env: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env(**extra_env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        yield proc
    finally:
        stop(proc, 20)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(db: str, port: int, **extra_env: str) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    cmd = [str(BIN / "actionhooks"), "serve", "--db", db, "--port", str(port), "--log-level", "warning"]
    return running(cmd, port, **extra_env)


def bare_app(port: int) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    cmd = [
        str(BIN / "uvicorn"),
        "bench.bare_app:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return running(cmd, port)
