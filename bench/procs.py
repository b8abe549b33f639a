"""Processes the benchmarks start: the service (``actionhooks serve``), a bare ASGI app, any command on a port;
waiting for a quiet machine. Ports, waits and stopping come from ``actionhooks.devtools.procs`` (shared with the
tests)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from actionhooks.devtools.procs import BIN, env, stop, wait_port


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


@contextlib.contextmanager
def running(cmd: list[str], port: int, **extra_env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` running until the block ends. Its standard error goes to a file (a pipe nobody reads fills up at 64 KB
    and then blocks the process at its next log line), shown at the end when there is any."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, env=env(**extra_env), stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_port(port)
            yield proc
        finally:
            stop(proc, 20)
            errors.seek(0)
            said = errors.read()
            if said:
                name = " ".join(cmd[:3])
                print(
                    f"{name} wrote to stderr (last 2000 bytes):",
                    said[-2000:].decode(errors="replace"),
                    file=sys.stderr,
                )


def receiver(port: int, ids_file: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The loopback receiver (``python -m actionhooks.devtools.receiver``) writing each received id to
    ``ids_file``, a line each."""
    cmd = [
        sys.executable,
        "-m",
        "actionhooks.devtools.receiver",
        "--port",
        str(port),
        "--ids-file",
        str(ids_file),
    ]
    return running(cmd, port)


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


def wrk(url: str, script: str, seconds: int, connections: int, folder: Path) -> tuple[int, float]:
    """Requests answered and seconds taken by ``wrk -t1`` running ``script`` against ``url``."""
    path = folder / "bench.lua"
    path.write_text(script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(path), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if done is None:
        raise RuntimeError(out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} requests failed:\n{out}")
    taken = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    return int(done.group(1)), taken
