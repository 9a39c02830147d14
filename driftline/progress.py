"""A progress bar for long CLI work (backfills, uploads) that also behaves in logs and CI.

On a terminal it redraws one line; otherwise it prints a line at most every
few seconds, so a backfill in CI shows it is alive without flooding the log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s
        self._last = 0.0
        self._t0 = time.monotonic()

    def advance(self, note: str = "", by: int = 1) -> None:
        self.done += by
        now = time.monotonic()
        final = self.done >= self.total
        if not self.tty and not final and now - self._last < self.every_s:
            return
        self._last = now
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        elapsed = now - self._t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        line = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:.0f}s elapsed, ~{eta:.0f}s left {note}"
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(120))
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
