"""``apply_view_lut``: every fast path equals the definition, ``np.interp`` of the values in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_prichexy.lut import apply_view_lut


def _definition(stored: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return np.interp(stored.astype(np.float64), lut[0], lut[1]).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["uint8", "int8", "uint16", "int16", ">u2", "int32", "uint32"]),
    seed=st.integers(0, 2**32 - 1),
    entries=st.integers(1, 40),
)
def test_fast_paths_equal_the_definition(dtype, seed, entries):
    rng = np.random.default_rng(seed)
    info = np.iinfo(np.dtype(dtype))
    low, high = max(int(info.min), -70000), min(int(info.max), 70000)
    stored = rng.integers(low, high, size=(17, 23), endpoint=True).astype(dtype)
    # a table over part of the range (values beyond it take the end points), increasing x
    xs = np.unique(rng.integers(low, high, size=entries, endpoint=True)).astype(np.float64)
    lut = np.stack([xs, np.sort(rng.random(xs.size))])
    out = apply_view_lut(stored, lut)
    assert out.dtype == np.float32 and out.shape == stored.shape
    np.testing.assert_array_equal(out, _definition(stored, lut))


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_values_beyond_the_table_take_its_end_points(dtype):
    stored = np.array([[-5 if dtype == "int16" else 0, 100, 4000, 40000 if dtype == "uint16" else 32767]], dtype=dtype)
    lut = np.array([[100.0, 4000.0], [0.25, 0.75]])
    out = apply_view_lut(stored, lut)
    assert out[0, 0] == np.float32(0.25) and out[0, -1] == np.float32(0.75)
