"""A small reference-versus-current bar chart as PNG bytes, for alert emails.

Why here and by hand: mail clients show inline images but run no script, so a chart must be a picture;
and a plotting library (tens of MB) for one small chart per drifted feature is out of proportion. PNG is
a zlib stream of pixel rows behind three chunks: a few lines of the standard library.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

REFERENCE = (148, 163, 184)  # slate grey: what the model was checked against
CURRENT = (37, 99, 235)  # blue: this window
BACKGROUND = (255, 255, 255)
AXIS = (203, 213, 225)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: Sequence[Sequence[tuple[int, int, int]]]) -> bytes:
    """RGB rows (top first) as a PNG file."""
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def bar_pairs(reference: Sequence[float], current: Sequence[float], *, height: int = 64, bar: int = 7,
              gap: int = 5) -> bytes:
    """One pair of bars per bin (reference left, current right), shares of each side scaled to the tallest."""
    if len(reference) != len(current) or not reference:
        raise ValueError("one share per bin on each side, and at least one bin")
    top = max(max(reference), max(current)) or 1.0
    width = len(reference) * (2 * bar + gap) + gap
    pixels = [[BACKGROUND] * width for _ in range(height)]
    for x in range(width):
        pixels[height - 1][x] = AXIS
    for i, (ref, cur) in enumerate(zip(reference, current)):
        left = gap + i * (2 * bar + gap)
        for offset, share, colour in ((0, ref, REFERENCE), (bar, cur, CURRENT)):
            tall = round((height - 2) * share / top)
            for y in range(height - 1 - tall, height - 1):
                for x in range(left + offset, left + offset + bar - 1):
                    pixels[y][x] = colour
    return encode_png(pixels)
