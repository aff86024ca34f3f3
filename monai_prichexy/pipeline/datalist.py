"""The bundle's datalist: the CLI's folder walk and keyed output names, as MONAI data dicts.

:func:`radiograph_datalist` walks the input tree with :func:`~monai_prichexy.pipeline.walk.walk_files`
(nested folders, sorted, hidden files ignored, loops detected), detects each file's format with
:func:`~monai_prichexy.formats.detect_format` (DICOM with or without a suffix), and names its
output with :class:`~monai_prichexy.pipeline.naming.Pseudonymizer` under the de-identification
key: the output tree is the one ``monai-prichexy anonymize`` writes for the same input and key,
and a rerun writes the same names (it overwrites; it never duplicates).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..formats import SUFFIXES, detect_format, dicom_guessed
from .naming import Pseudonymizer
from .walk import walk_files

__all__ = ["bundle_key", "check_output_dir", "radiograph_datalist"]


def bundle_key(key_file: str | os.PathLike | None):
    """The :class:`~monai_prichexy.dicom.DeidKey` in ``key_file``; a clear error without one."""
    from ..dicom import load_key

    if not key_file:
        raise ValueError(
            "key_file is required: output names and DICOM UIDs are keyed pseudonyms; "
            "make a key once with `monai-prichexy keygen steward.key` and pass --key_file steward.key"
        )
    if not Path(key_file).is_file():
        raise FileNotFoundError(f"key_file {key_file} does not exist (make one with `monai-prichexy keygen`)")
    return load_key(key_file)


def check_output_dir(output_dir: str | os.PathLike | None, dataset_dir: str | os.PathLike) -> Path:
    """``output_dir`` as a path; refuses none, the input folder itself or a folder inside it."""
    if output_dir is None or not os.fspath(output_dir):
        raise ValueError("output_dir is required: the folder the anonymized copies are written to")
    out, data = Path(output_dir).resolve(), Path(dataset_dir).resolve()
    if out == data or data in out.parents:
        raise ValueError("output_dir must not be the input folder or inside it")
    return Path(output_dir)


def _is_guessed_dicom_that_is_not(path: Path, head: bytes, allow_secondary_capture: bool) -> bool:
    """A file named without a DICOM suffix and without the 'DICM' prefix that is not DICOM either
    (the CLI skips those, too)."""
    if not dicom_guessed(path, head):
        return False
    from ..dicom import NotDicomError, UnsupportedDicomError, read_radiograph

    try:
        read_radiograph(path, allow_secondary_capture=allow_secondary_capture)
    except NotDicomError:
        return True
    except UnsupportedDicomError:
        return False
    return False


def radiograph_datalist(
    dataset_dir: str | os.PathLike,
    key,
    image_key: str = "image",
    source_key: str = "source",
    output_key: str = "output",
    exclude: tuple[str | os.PathLike, ...] = (),
    allow_secondary_capture: bool = False,
) -> list[dict[str, Any]]:
    """One ``{image_key: path, source_key: path, output_key: relative output path}`` per radiograph.

    Args:
        dataset_dir: the input folder (walked recursively).
        key: the :class:`~monai_prichexy.dicom.DeidKey` of the output names.
        exclude: folders never to enter (the output folder).
        allow_secondary_capture: as :class:`~monai_prichexy.data.RadiographReader`.
    """
    pseudonymizer = Pseudonymizer(key)
    items: list[dict[str, Any]] = []
    for entry in walk_files(dataset_dir, exclude=exclude):
        if entry.kind != "file":
            continue
        with open(entry.path, "rb") as handle:
            head = handle.read(512)
        kind = detect_format(entry.path, head)
        if kind is None or (kind == "dicom" and _is_guessed_dicom_that_is_not(entry.path, head, allow_secondary_capture)):
            continue
        rel_out = pseudonymizer.output_relpath(entry.rel, SUFFIXES[kind])
        items.append({image_key: str(entry.path), source_key: str(entry.path), output_key: rel_out.as_posix()})
    return items
