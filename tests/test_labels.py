"""Label schemas: losses, probabilities and the binary question of each data set against hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from monai_prichexy.labels import CXR14_LABELS, CXR14_SCHEMA, KERMANY_SCHEMA, LabelSchema, get_schema


def test_registry_and_validation():
    assert get_schema("kermany") is KERMANY_SCHEMA and get_schema(CXR14_SCHEMA) is CXR14_SCHEMA
    assert CXR14_SCHEMA.classes == CXR14_LABELS and KERMANY_SCHEMA.classes == ("normal", "bacteria", "virus")
    with pytest.raises(ValueError, match="unknown data set"):
        get_schema("mnist")
    with pytest.raises(ValueError, match="kind must be one of"):
        LabelSchema("x", ("a", "b"), "ordinal", "b", ("b",), "a")
    with pytest.raises(ValueError, match="binary_positive"):
        LabelSchema("x", ("a", "b"), "multiclass", "c", ("c",), "a")


def test_multilabel_loss_and_scores_by_hand():
    logits = torch.tensor([[2.0, -1.0] + [0.0] * 12, [-3.0, 0.5] + [0.0] * 12])
    targets = torch.zeros(2, 14)
    targets[0, 0] = 1
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1)
    assert torch.allclose(CXR14_SCHEMA.loss(logits, targets, reduction="none"), expected)
    probs = CXR14_SCHEMA.probabilities(logits.numpy())
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits.numpy())), rtol=1e-6)
    # any finding = the largest of the 14 probabilities; target 1 when any label is positive
    np.testing.assert_allclose(CXR14_SCHEMA.binary_scores(probs), probs.max(1))
    assert CXR14_SCHEMA.binary_targets(targets.numpy()).tolist() == [1, 0]


def test_multiclass_loss_and_scores_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    targets = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    p = torch.softmax(logits, 1)
    expected = -torch.log(torch.stack((p[0, 0], p[1, 2])))
    assert torch.allclose(KERMANY_SCHEMA.loss(logits, targets, reduction="none"), expected, atol=1e-6)
    assert float(KERMANY_SCHEMA.loss(logits, targets)) == pytest.approx(float(expected.mean()), rel=1e-6)
    probs = KERMANY_SCHEMA.probabilities(logits)
    assert torch.allclose(probs.sum(1), torch.ones(2))
    # pneumonia = bacterial + viral softmax mass = 1 - p(normal)
    np.testing.assert_allclose(KERMANY_SCHEMA.binary_scores(probs.numpy()), 1 - probs[:, 0].numpy(), rtol=1e-6)
    assert KERMANY_SCHEMA.binary_targets(targets.numpy()).tolist() == [0, 1]
