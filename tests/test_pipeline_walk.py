"""Tests of monai_prichexy.pipeline.walk helpers."""

from __future__ import annotations

import os

from monai_prichexy.pipeline.walk import is_inside


def test_is_inside(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert is_inside(tmp_path / "a" / "b", tmp_path / "a")
    assert is_inside(tmp_path / "a", tmp_path / "a")
    assert is_inside(tmp_path / "a" / "new" / "key", tmp_path / "a")  # need not exist
    assert not is_inside(tmp_path / "a", tmp_path / "a" / "b")
    assert not is_inside(tmp_path / "ab", tmp_path / "a")  # a prefix of the name is not a parent
    assert is_inside(str(tmp_path / "a" / ".." / "a" / "b"), str(tmp_path / "a"))
    os.symlink(tmp_path / "a" / "b", tmp_path / "link")
    assert is_inside(tmp_path / "link" / "key", tmp_path / "a")  # links resolved
