"""Which detector worker takes which model: rendezvous hashing of the model name over `n` shards.

A worker configured as shard `i/n` (DRIFTLINE_DETECTOR_SHARD) schedules only
the models whose highest-scoring shard is `i`. The score is md5 of
(shard, model name): the same on every host and every Python (unlike
`hash()`), needs no coordination, and when `n` changes only the models
whose winner changed move (about 1/n of them), instead of nearly all as with
`md5 mod n`. Two workers running the same model's window by mistake (two
hosts both left at the default 0/1) are caught by the window claims in
`detectors/claims.py`, not here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")


def shard_of(model: str, count: int) -> int:
    """The shard (0..count-1) that owns `model`: the one with the highest md5(shard, name) score."""
    if count < 1:
        raise ValueError("the shard count must be at least 1")
    name = model.encode()
    return max(range(count), key=lambda i: (hashlib.md5(b"%d\0" % i + name, usedforsecurity=False).digest(), -i))


@dataclass(frozen=True)
class Shard:
    """This worker's place among the detector workers: shard `index` of `count`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"detector shard {self.index}/{self.count}: the index must be in 0..{self.count - 1}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """`"i/n"`, e.g. `"0/1"` (one worker takes everything) or `"2/4"`."""
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"detector shard must look like 'i/n' (e.g. '0/1' or '2/4'), not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, model: str) -> bool:
        return shard_of(model, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
