"""Tests of monai_prichexy.dicom.keys: the key file and the keyed UIDs, pseudonyms and date offsets."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest

from monai_prichexy.dicom import DeidConfig, DeidKey, date_shift_days, load_or_create_key, remap_uid

KEY = DeidKey(bytes(range(32)))


def test_uid_formula():
    expected = "2.25." + str(int.from_bytes(hmac.new(bytes(range(32)), b"1.2.3.4", hashlib.sha256).digest()[:16], "big"))
    assert remap_uid("1.2.3.4", KEY) == expected == remap_uid("1.2.3.4", bytes(range(32)))
    assert remap_uid("1.2.3.4", KEY) != remap_uid("1.2.3.5", KEY)


def test_date_shift_days_range():
    assert all(-365 <= date_shift_days(str(i), KEY) <= -1 for i in range(200))
    assert len({date_shift_days(str(i), KEY) for i in range(200)}) > 50


def test_key_file_created_0600_and_reloaded(tmp_path):
    path = tmp_path / "deid.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text().strip()
    assert len(text) == 64 and bytes.fromhex(text)
    assert load_or_create_key(path) == key
    assert text not in repr(key) and key.fingerprint in repr(key)
    with pytest.raises(FileNotFoundError):
        load_or_create_key(tmp_path / "absent.key", create=False)
    config = DeidConfig.from_key_file(path, dates="shift")
    assert config.key == key and config.dates == "shift"


def test_key_validation():
    with pytest.raises(ValueError):
        DeidKey(b"short")
    with pytest.raises(ValueError):
        DeidKey.from_hex("zz")
