"""The keys of the items and batches that the data sets give and the engines read, named once.

As MONAI's :class:`~monai.utils.CommonKeys`: members are strings (``BatchKeys.IMAGE == "image"``),
so a dict built with them is indexed by the plain strings too, and bundle configs that name
the keys as text keep working.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BatchKeys"]


class BatchKeys(StrEnum):
    """Keys of a data item / batch.

    ``IMAGE``, ``LABEL``: an image and its label vector (classifier, generator pre-training);
    ``PATIENT``: the integer code of its patient (metric learning). A verification pair has
    ``IMAGE1``, ``IMAGE2``, ``LABEL`` (1 = same patient) and the label vectors ``LABELS1``,
    ``LABELS2`` of its two images.
    """

    IMAGE = "image"
    LABEL = "label"
    PATIENT = "patient"
    IMAGE1 = "image1"
    IMAGE2 = "image2"
    LABELS1 = "labels1"
    LABELS2 = "labels2"
