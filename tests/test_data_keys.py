"""Tests of monai_prichexy.data.keys: the batch keys keep their string values."""

from __future__ import annotations

import json

import torch
from torch.utils.data import default_collate

from monai_prichexy.data import BatchKeys


def test_values_are_the_strings_the_configs_use():
    assert {k.name: k.value for k in BatchKeys} == {
        "IMAGE": "image", "LABEL": "label", "PATIENT": "patient", "IMAGE1": "image1", "IMAGE2": "image2",
        "LABELS1": "labels1", "LABELS2": "labels2",
    }
    assert BatchKeys.IMAGE == "image" and str(BatchKeys.IMAGE) == "image" and f"{BatchKeys.IMAGE}_meta" == "image_meta"


def test_items_built_with_the_keys_are_indexed_by_strings():
    batch = default_collate([{BatchKeys.IMAGE: torch.zeros(1, 2, 2), BatchKeys.LABEL: torch.ones(3)}] * 2)
    assert batch["image"].shape == (2, 1, 2, 2) and batch["label"].shape == (2, 3)
    assert json.loads(json.dumps({BatchKeys.PATIENT: 1})) == {"patient": 1}
