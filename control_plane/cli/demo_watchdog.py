"""The demo's watchdog: ends the simulator child if the demo dies without stopping it (SIGKILL, OOM).

Run by path, standard library only (no package import, starts at once):
`python demo_watchdog.py SIM_PID`, with a pipe from the demo as stdin, in its own session so a
Ctrl-C or a closed terminal does not reach it. It blocks reading the pipe. The demo writes `done`
once it has stopped the simulator itself, then closes the pipe: the watchdog just exits. If the
pipe closes without `done`, the demo died without its cleanup: the watchdog sends the simulator
SIGTERM (its own orderly stop), then SIGKILL if it is still there after a grace period.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

DONE = b"done"
GRACE_S = 10.0


def is_simulator(pid: int) -> bool:
    """Whether `pid` is still the simulator (not a process that reused its pid); True off Linux."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True
    try:
        return b"chaos.simulator" in cmdline.read_bytes()
    except OSError:
        return False  # gone


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie waiting for its new parent to reap it has no cmdline left: it is gone for us
    return is_simulator(pid)


def end(pid: int, grace_s: float = GRACE_S) -> None:
    if not is_simulator(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    if is_simulator(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return


def main(argv: list[str]) -> int:
    pid = int(argv[1])
    said = sys.stdin.buffer.read()  # returns when the demo closes the pipe, or dies
    if DONE not in said:
        end(pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
