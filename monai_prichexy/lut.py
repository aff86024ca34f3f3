"""Value tables: the view of stored pixel values through a ``(2, K)`` table (numpy; torch for the 8/16-bit gather).

The DICOM reader's view (:func:`monai_prichexy.dicom.reader.compute_view_lut`) is such a table;
the reader's lazy full-size view and :func:`monai_prichexy.transforms.network_view` both apply it
here, so that the MONAI Label environment (pydicom 2) can use the transforms without the DICOM code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["apply_view_lut"]


def apply_view_lut(stored: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """The float32 view of ``stored`` through a ``(2, K)`` table: values between its entries are
    interpolated, values beyond it take its end points. Integer values: one lookup each in a
    dense float32 table (the same interpolation at every integer), no float64 pass."""
    arr = np.asarray(stored)
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize <= 2 and lut.shape[1]:
        # 8/16-bit: a table over every value of the dtype (at most 65,536 entries; np.interp takes
        # the end points beyond the table, as below), gathered by torch with int32 indices: a
        # quarter of the time of numpy's take, which converts the indices to int64 first
        import torch  # here: the DICOM reader imports this module and needs no torch otherwise

        low = int(np.iinfo(arr.dtype).min)
        dense = np.interp(np.arange(low, int(np.iinfo(arr.dtype).max) + 1, dtype=np.float64), lut[0], lut[1])
        index = torch.from_numpy(np.ascontiguousarray(arr).reshape(-1).astype(np.int32))
        if low:
            index -= low
        return torch.from_numpy(dense.astype(np.float32)).index_select(0, index).numpy().reshape(arr.shape)
    if np.issubdtype(arr.dtype, np.integer) and lut.shape[1] and lut[0, -1] - lut[0, 0] <= 1 << 17:
        low = int(lut[0, 0])
        dense = np.interp(np.arange(low, int(lut[0, -1]) + 1, dtype=np.float64), lut[0], lut[1]).astype(np.float32)
        return np.take(dense, arr.astype(np.int64) - low, mode="clip")
    return np.interp(arr.astype(np.float64), lut[0], lut[1]).astype(np.float32)
