"""A bounded on-disk FIFO of encoded log lines, for when a sink fails or cannot keep up.

The spool is a folder of segment files, one per spilled batch, named by a sequence number
(``000000000042.seg``). A segment is written to a temporary name and renamed into place, so a
segment is whole or absent, never torn. Each line of a segment is the record's hour key, a tab,
and the encoded line (JSON never holds a raw tab or newline). Replay takes the oldest segment
first, so records reach the sink in the order they were accepted.

Each process claims a *slot* (``slot-0``, ``slot-1``, …) by holding an exclusive ``flock`` on
its lock file for its lifetime: workers of one gateway never share a slot, and a process started
after a crash takes over the slot, and the records, its predecessor left. The spool survives a
process crash (the page cache keeps the files), not a power loss (segments are not fsynced).
"""

from __future__ import annotations

import fcntl
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

Line = tuple[str, bytes]

SUFFIX = ".seg"
HOUR_LEN = 13  # "2026-11-26T18"


class SpoolFull(Exception):
    """The spool has no room for the batch (its bound, or its file system)."""


class Spool:
    """Segments under ``root/slot-N`` holding at most ``max_bytes``."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.bytes = 0
        self.records = 0
        self.folder: Path | None = None
        self._lock_fd: int | None = None
        self._segments: list[tuple[Path, int, int]] = []  # path, bytes, records; oldest first
        self._next = 0

    def open(self) -> None:
        """Claim the first free slot and take over the segments it holds."""
        self.root.mkdir(parents=True, exist_ok=True)
        for n in itertools.count():
            folder = self.root / f"slot-{n}"
            folder.mkdir(exist_ok=True)
            fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._lock_fd, self.folder = fd, folder
            break
        for p in sorted(folder.glob("*" + SUFFIX)):
            data = p.read_bytes()
            self._segments.append((p, len(data), data.count(b"\n")))
            self._next = int(p.stem) + 1
        for p in folder.glob("*.tmp"):  # a spill cut short by a crash: never visible
            p.unlink()
        self.bytes = sum(s[1] for s in self._segments)
        self.records = sum(s[2] for s in self._segments)

    def close(self) -> None:
        """Release the slot (its segments stay for the next process)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __len__(self) -> int:
        return len(self._segments)

    def append(self, lines: Sequence[Line]) -> None:
        """Add a segment after the others; raise SpoolFull (nothing added) if it does not fit,
        or OSError if the file system refuses it."""
        data = b"".join(hour.encode() + b"\t" + line + b"\n" for hour, line in lines)
        if self.bytes + len(data) > self.max_bytes:
            raise SpoolFull(f"the spool holds {self.bytes} bytes; at most {self.max_bytes}")
        path = self._write(self._next, data)
        self._next += 1
        self._segments.append((path, len(data), len(lines)))
        self.bytes += len(data)
        self.records += len(lines)

    def oldest(self) -> list[Line]:
        """The lines of the oldest segment (the spool must not be empty)."""
        path = self._segments[0][0]
        out = []
        for raw in path.read_bytes().splitlines():
            if len(raw) > HOUR_LEN and raw[HOUR_LEN : HOUR_LEN + 1] == b"\t":
                out.append((raw[:HOUR_LEN].decode(), raw[HOUR_LEN + 1 :]))
        return out

    def pop_oldest(self) -> None:
        """Forget the oldest segment (its lines reached the sink)."""
        path, size, records = self._segments.pop(0)
        path.unlink(missing_ok=True)
        self.bytes -= size
        self.records -= records

    def replace_oldest(self, lines: Sequence[Line]) -> None:
        """Keep only ``lines`` of the oldest segment (the others reached the sink)."""
        path, size, records = self._segments[0]
        data = b"".join(hour.encode() + b"\t" + line + b"\n" for hour, line in lines)
        self._write(int(path.stem), data)  # renamed over the old one: whole or unchanged
        self._segments[0] = (path, len(data), len(lines))
        self.bytes += len(data) - size
        self.records += len(lines) - records

    def _write(self, seq: int, data: bytes) -> Path:
        if self.folder is None:
            raise RuntimeError("Spool.open() was not called")
        path = self.folder / f"{seq:012d}{SUFFIX}"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return path
