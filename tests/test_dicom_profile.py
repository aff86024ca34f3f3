"""Tests of monai_prichexy.dicom.profile helpers (the profile itself is tested through deidentify)."""

from __future__ import annotations

from monai_prichexy.dicom.profile import shift_date, shift_datetime


def test_shift_helpers():
    assert shift_date("20240301", -1) == "20240229"
    assert shift_date("2024.03.01", -1) == "20240229"
    assert shift_date("2024", -1) is None and shift_date("garbage", -3) is None
    assert shift_datetime("20240301235959.5+0100", -1) == "20240229235959.5+0100"
    assert shift_datetime("202403", -1) is None
