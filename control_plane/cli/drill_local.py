"""Drills running on this machine, so `drctl drill abort` reaches those with a world of their own
(whose control plane lives on a random port only the drill knows): one small file per drill in a
per-user directory, holding no secret; abort sends SIGTERM, which the drill turns into rollbacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def runs_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"drctl-drills-{os.getuid()}"


@contextlib.contextmanager
def registered(experiment: str, target: str | None) -> Iterator[None]:
    """This process is a running drill while the block runs."""
    folder = runs_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "experiment": experiment, "target": target,
                                "started_at": time.time()}))  # fmt: skip
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _is_drill(pid: int) -> bool:
    """Still alive and still a drill: a pid reused by another program must not get the signal."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"drill" in cmdline and b"run" in cmdline


def signal_all(signum: int) -> list[int]:
    """Send `signum` to every registered drill on this machine; forget the files of dead ones."""
    folder = runs_dir()
    sent: list[int] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            pid = int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid() or not _is_drill(pid):
            path.unlink(missing_ok=True)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            sent.append(pid)
    return sent
