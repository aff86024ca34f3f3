"""Exceptions raised by :mod:`monai_prichexy.dicom`.

Every refusal of an input file is an :class:`UnsupportedDicomError` (a ``ValueError``) whose
message starts with the file name and says why, so that a batch job can log it and go on with
the next file. Problems found while de-identifying or writing have their own classes.
"""

from __future__ import annotations

import os

__all__ = [
    "UnsupportedDicomError",
    "NotARadiographError",
    "NotDicomError",
    "DeidentificationError",
    "BurnedInAnnotationError",
    "DicomWriteError",
]


class UnsupportedDicomError(ValueError):
    """The file is not a single-frame grayscale radiograph this package can process.

    Attributes:
        path: the offending file (``None`` for an in-memory dataset).
        reason: a short human-readable reason, without any header values.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        where = "<in-memory dataset>" if self.path is None else self.path
        super().__init__(f"{where}: {reason}")


class NotARadiographError(UnsupportedDicomError):
    """A readable DICOM image that is out of scope: not a projection radiograph (CT, MR, US, NM,
    PET, RT, mammography, ...) or a Secondary Capture that was not explicitly allowed.

    A subclass of :class:`UnsupportedDicomError`, so a batch records it like any other refused
    input (status ``failed`` with the reason in the manifest).
    """


class NotDicomError(UnsupportedDicomError):
    """The file is not DICOM at all: no ``DICM`` prefix and it does not parse as a complete image
    dataset. A batch skips such a file when nothing but its missing suffix made it look like DICOM."""


class DeidentificationError(ValueError):
    """The header cannot be de-identified safely with the requested options."""


class BurnedInAnnotationError(DeidentificationError):
    """``BurnedInAnnotation`` is ``YES`` and ``allow_burned_in`` was not set.

    Text burned into the pixels is out of scope of this package: the deformation does not
    remove it reliably.
    """


class DicomWriteError(RuntimeError):
    """Writing or verifying the output file failed; no partial output is left behind."""
