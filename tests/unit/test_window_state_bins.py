"""The quantized bins of the window states: every value lies in the bin its key stands for, and Wasserstein
from those bins stays within its rigorous error bound of the exact value."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.states import _intervals, fine_bins
from detectors.summaries import cdf_stats_from_arrays, cdf_stats_from_bins, w1_binning_error_bound
from driftline.store.window_states import _MASK, MANTISSA_BITS


def quantize(values: np.ndarray) -> np.ndarray:
    """The view's quantization, in numpy: the same bits cleared."""
    return (np.asarray(values, dtype=np.float64).view(np.uint64) & np.uint64(_MASK)).view(np.float64)


def histogram(values: np.ndarray) -> dict[float, int]:
    keys, counts = np.unique(quantize(values), return_counts=True)
    out: dict[float, int] = {}
    for k, c in zip(keys, counts, strict=True):
        out[float(k)] = out.get(float(k), 0) + int(c)  # -0.0 and 0.0 are one key, as in detectors.states
    return out


SAMPLES = {
    "normal": lambda rng, shift: rng.normal(shift, 1.0, 20_000),
    "offset": lambda rng, shift: rng.normal(100.0 + shift, 2.0, 20_000),
    "lognormal": lambda rng, shift: rng.lognormal(shift, 0.8, 20_000),
    "integers": lambda rng, shift: np.round(rng.normal(1.0 + shift, 2.0, 20_000)),
    "tiny": lambda rng, shift: rng.normal(shift * 1e-6, 1e-6, 20_000),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_value_lies_in_its_keys_bin_of_relative_width_2_to_minus_k(kind: str) -> None:
    values = SAMPLES[kind](np.random.default_rng(1), 0.0)
    lo, hi, counts = _intervals(histogram(values))
    assert counts.sum() == values.size and np.all(hi > lo)
    index = np.searchsorted(lo, values, side="right") - 1
    assert np.all(lo[index] <= values) and np.all(values <= hi[index])
    nonzero = values != 0
    assert np.all((hi - lo)[index][nonzero] <= np.abs(values[nonzero]) * 2.0 ** -MANTISSA_BITS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5])
def test_wasserstein_from_state_bins_is_within_its_bound_of_the_exact_value(kind: str, shift: float) -> None:
    rng = np.random.default_rng(7)
    ref, cur = SAMPLES[kind](rng, 0.0), SAMPLES[kind](rng, shift)
    edges, r, c = fine_bins(histogram(ref), histogram(cur))
    exact = cdf_stats_from_arrays(ref, cur)
    binned = cdf_stats_from_bins(edges, r, c, exact.ref_std)
    bound = w1_binning_error_bound(edges, r, c)
    assert abs(binned.w1 - exact.w1) <= bound + 1e-12 * exact.ref_std
    # What the detector compares with its threshold: normed by the reference's std.
    assert abs(binned.w1 - exact.w1) / exact.ref_std < 2e-3
