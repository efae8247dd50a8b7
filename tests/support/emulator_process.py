"""`python -m cloudflare_emulator` as a real process on a free port, for tests over real HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING = "Cloudflare API emulator listening on "


@contextlib.contextmanager
def running_emulator(*arguments: str) -> Iterator[str]:
    """Start the emulator with `arguments` on a port the system picks; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudflare_emulator", "--host", "127.0.0.1", "--port", "0", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(LISTENING), f"the emulator did not start: {line!r}"
        yield line[len(LISTENING) :].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
