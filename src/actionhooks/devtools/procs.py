"""Child processes for tests and benchmarks: a free loopback port, waiting for a listener, stopping a process,
the environment a child ``actionhooks`` runs in, and an account made by the real command."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent  # the running environment's scripts: actionhooks, uvicorn


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on the loopback ``port``; RuntimeError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def env(**extra: str) -> dict[str, str]:
    """This process's environment for a child ``actionhooks``: loopback destinations allowed, ``extra`` added."""
    out = dict(os.environ)
    out.setdefault("ACTIONHOOKS_ALLOW_NETS", "127.0.0.0/8")
    out.update(extra)
    return out


def create_account(db: str, name: str = "dev") -> tuple[int, str]:
    """An account made by ``actionhooks accounts create``: its id and API key."""
    done = subprocess.run(
        [str(BIN / "actionhooks"), "accounts", "create", name, "--db", db],
        check=True,
        capture_output=True,
        text=True,
        env=env(),
    )
    data = json.loads(done.stdout)
    return int(data["account_id"]), str(data["api_key"])
