"""Effect sizes and histograms of drifted features in alert emails (alerts/evidence.py, alerts/histogram_png.py)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alerts.evidence import _categorical, _numeric
from alerts.histogram_png import CURRENT, REFERENCE, bar_pairs


def decode(png: bytes) -> list[list[tuple[int, int, int]]]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + size]
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == struct.unpack(">I", png[pos + 8 + size:pos + 12 + size])[0]
        if kind == b"IHDR":
            width = struct.unpack(">I", data[:4])[0]
        idat += data if kind == b"IDAT" else b""
        pos += 12 + size
    raw, stride = zlib.decompress(idat), 1 + 3 * width
    return [[tuple(raw[r * stride + 1 + 3 * x: r * stride + 4 + 3 * x]) for x in range(width)]  # type: ignore[misc]
            for r in range(len(raw) // stride)]


def test_bars_are_as_tall_as_their_shares() -> None:
    pixels = decode(bar_pairs([0.5, 0.25], [0.25, 0.5], height=42))
    column = {colour: [sum(1 for row in pixels if row[x] == colour) for x in range(len(pixels[0]))]
              for colour in (REFERENCE, CURRENT)}
    assert max(column[REFERENCE][:19]) == 40 and max(column[CURRENT][:19]) == 20  # bin 1: half, a quarter
    assert max(column[REFERENCE][19:]) == 20 and max(column[CURRENT][19:]) == 40
    with pytest.raises(ValueError):
        bar_pairs([0.1], [0.1, 0.2])


def test_numeric_effects_are_the_shift_in_reference_sds_ks_and_normed_wasserstein() -> None:
    rng = np.random.default_rng(1)
    ref, cur = pd.Series(rng.normal(10, 2, 3000)), pd.Series(rng.normal(13, 2, 3000))
    ev = _numeric("x", ref, cur, "h@d")
    sd = ref.std(ddof=1)
    assert ev.effects[0] == f"mean +{(cur.mean() - ref.mean()) / sd:.3g} reference SDs ({ref.mean():.3g} to {cur.mean():.3g})"
    assert ev.effects[1] == f"KS statistic {stats.ks_2samp(ref, cur).statistic:.3g}"
    assert ev.effects[2] == f"normed Wasserstein {stats.wasserstein_distance(ref, cur) / sd:.3g}"
    assert ev.png is not None and ev.bins.startswith("12 bins from")
    empty = _numeric("x", ref, pd.Series([None, "n/a"]), "h@d")
    assert empty.png is None and "no values" in empty.effects[0]


def test_categorical_effects_name_the_categories_whose_share_moved_most() -> None:
    ref = pd.Series(["DE"] * 30 + ["FR"] * 50 + ["US"] * 20 + [str(i) for i in range(10)] * 1)
    cur = pd.Series(["DE"] * 55 + ["FR"] * 25 + ["US"] * 20 + [1.0] * 10)
    ev = _categorical("country", ref, cur, "h@d")
    assert ev.effects[0] == "share of 'DE' 27% to 50%" and ev.effects[1] == "share of 'FR' 45% to 23%"
    assert ev.bins.split(", ")[:3] == ["DE", "FR", "US"] and ev.bins.endswith("other")  # 12 categories, 7 drawn
    same = _categorical("c", pd.Series(["a", "b"] * 50), pd.Series(["b", "a"] * 50), "h@d")
    assert same.effects == ("no category's share moved by half a point",)
