"""Operators of the MONAI Deploy application (needs the ``deploy`` extra).

* :class:`RadiographAnonymizeOperator`: for every SOP instance of the selected CR/DX/DR
  series, deforms the native-resolution stored pixels with PriCheXy-Net and de-identifies the
  header (PS3.15 Annex E, keyed UIDs); emits an :class:`AnonymizationBatch`. It runs the
  pipeline's own :class:`~monai_prichexy.pipeline.FileAnonymizer` (same deformation, same
  de-identification settings as ``monai-prichexy anonymize``): an instance comes out
  byte-identical to :meth:`FileAnonymizer.anonymize_dicom`'s output for the same key.
* :class:`DeidentifiedDICOMWriterOperator`: writes each de-identified instance atomically as
  ``<new SOPInstanceUID>.dcm`` through :mod:`monai_prichexy.dicom`.

The SDK's own DICOM writers (``DICOMSegmentationWriterOperator``, ``DICOMTextSRWriter``, ...)
create *new derived* series that reference the source; here the output must be the source
instance itself, de-identified and with deformed pixels, so the writer is ours.

Each input file is processed on its own: a file that is refused (not a single-frame grayscale
radiograph, ``BurnedInAnnotation = YES``, cannot be written) is logged with the reason and
skipped (named by its keyed pseudonym, as ``monai-prichexy anonymize`` names it: folder and
file names can carry PHI, and ``monai-prichexy locate`` maps the id back for the key holder), the others are written, and the writer then raises, so the application exits with a
non-zero status whenever something was not anonymized.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec

from ..dicom import DeidConfig, DeidKey, deidentify, load_or_create_key, radiograph_from_dataset, read_radiograph
from ..dicom import Radiograph, WriteResult, write_dataset
from ..dicom.errors import DeidentificationError, DicomWriteError, UnsupportedDicomError
from ..pipeline import Deformer, FileAnonymizer, Pseudonymizer
from ..pipeline.walk import is_inside
from ..weights import MissingSetupError
from .options import resolve_model_file

__all__ = [
    "AnonymizedInstance",
    "AnonymizationBatch",
    "RadiographAnonymizeOperator",
    "DeidentifiedDICOMWriterOperator",
    "build_file_anonymizer",
    "anonymize_instance",
    "write_instance",
]

logger = logging.getLogger(__name__)


@dataclass
class AnonymizedInstance:
    """One de-identified SOP instance, ready to be written (no PHI left in ``dataset``)."""

    dataset: Any  # pydicom Dataset, de-identified, without Pixel Data
    stored: np.ndarray  # deformed stored values (rounded and clipped to BitsStored)
    photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    source_transfer_syntax: Any
    lossy_source: bool
    source_path: Path | None

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


@dataclass
class AnonymizationBatch:
    """What the anonymize operator hands to the writer."""

    instances: list[AnonymizedInstance] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # reasons, one per refused instance


def _scrub(text: str, path: str | os.PathLike | None) -> str:
    """``text`` without the input's path or any of its parts (a message can quote them)."""
    if not path:
        return text
    path = Path(path)
    needles = {str(path), str(path.resolve())} | {part for part in path.parts if len(part) >= 3}
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, "<input>")
    return text


def instance_label(native, key: DeidKey, input_folder: str | os.PathLike | None) -> str:
    """How the log names an input instance: ``file <pseudonym>``, the id ``monai-prichexy anonymize``
    gives the same file under the same key (``monai-prichexy locate`` maps it back), never its name."""
    filename = getattr(native, "filename", None)
    if isinstance(filename, (str, os.PathLike)) and input_folder is not None:
        try:
            rel = Path(filename).resolve().relative_to(Path(input_folder).resolve())
            return f"file {Pseudonymizer(key).file_id(PurePosixPath(rel.as_posix()))}"
        except (ValueError, OSError):
            pass
    return "an instance outside the input folder"


def build_file_anonymizer(
    model_path: str | os.PathLike,
    mu: float | None = None,
    key_file: str | os.PathLike | None = None,
    dates: str = "remove",
    device: str | None = None,
    expected_sha256: str | None = None,
    output_folder: str | os.PathLike | None = None,
) -> FileAnonymizer:
    """The pipeline's :class:`~monai_prichexy.pipeline.FileAnonymizer`, set up as the CLI sets it up.

    ``model_path``: a generator checkpoint or a folder holding one; ``mu`` overrides the
    checkpoint's; ``key_file`` is created (0600) when missing, must not lie in
    ``output_folder``; without it a random key is used for this run.
    """
    weights = resolve_model_file(model_path)
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        deformer = Deformer(weights, mu=mu, device=device, expected_sha256=expected_sha256)
    except ValueError as err:
        hint = "; pass --mu or set PRICHEXY_MU" if isinstance(err, MissingSetupError) else ""
        raise ValueError(f"{weights.name}: {err}{hint}") from None
    if key_file:
        if output_folder is not None and is_inside(key_file, output_folder):
            raise ValueError(f"key file {key_file} is inside the output folder, which is meant to be published")
        key = load_or_create_key(key_file)
    else:
        key = DeidKey.generate()
        logger.warning(
            "no de-identification key given (--key-file / PRICHEXY_DEID_KEY_FILE): using a random key, "
            "so UIDs and pseudonyms will differ from those of other runs"
        )
    logger.info(
        "PriCheXy-Net: mu=%g, smoothing=%s, device=%s, weights sha256 %s..., key fingerprint %s",
        deformer.mu, deformer.smoothing, deformer.device, (deformer.weights_sha256 or "")[:16], key.fingerprint,
    )
    return FileAnonymizer(deformer, DeidConfig(key=key, dates=dates))


def _radiograph_of(native) -> Radiograph:
    """Read the instance through :func:`read_radiograph` (all its checks) when it has a file."""
    filename = getattr(native, "filename", None)
    if isinstance(filename, (str, os.PathLike)) and Path(filename).is_file():
        return read_radiograph(filename)
    return radiograph_from_dataset(native)


def anonymize_instance(anonymizer: FileAnonymizer, native) -> AnonymizedInstance:
    """Deform the native pixels and de-identify the header of one SOP instance (pydicom dataset).

    The steps of :meth:`FileAnonymizer.anonymize_dicom`, whose last one
    (:func:`~monai_prichexy.dicom.write_radiograph` = ``deidentify`` + ``write_dataset``) is
    split between this operator (``deidentify``) and the writer (:func:`write_instance`).
    """
    rad = _radiograph_of(native)
    warped = anonymizer.deform(rad)  # the reader's values and network view, as for a file
    result = deidentify(rad.dataset, anonymizer.deid, keep_pixel_data=False)
    return AnonymizedInstance(
        dataset=result.dataset,
        stored=warped,
        photometric=rad.photometric,
        bits_allocated=rad.bits_allocated,
        bits_stored=rad.bits_stored,
        pixel_representation=rad.pixel_representation,
        source_transfer_syntax=rad.transfer_syntax,
        lossy_source=rad.lossy,
        source_path=rad.path,
    )


def write_instance(item: AnonymizedInstance, out_path: str | os.PathLike) -> WriteResult:
    """Write one :class:`AnonymizedInstance` atomically (as :func:`~monai_prichexy.dicom.write_radiograph` does)."""
    return write_dataset(
        item.dataset,
        item.stored,
        out_path,
        photometric=item.photometric,
        bits_allocated=item.bits_allocated,
        bits_stored=item.bits_stored,
        pixel_representation=item.pixel_representation,
        source_transfer_syntax=item.source_transfer_syntax,
        lossy_source=item.lossy_source,
        protect=(item.source_path,) if item.source_path is not None else (),
    )


class RadiographAnonymizeOperator(Operator):
    """PriCheXy-Net pixel deformation + PS3.15 Annex E header de-identification.

    Named input:
        study_selected_series_list: the ``DICOMSeriesSelectorOperator``'s output.

    Named output:
        anonymized: an :class:`AnonymizationBatch`.

    Args:
        fragment: the application.
        model_path: generator checkpoint, or a folder holding exactly one.
        mu: deformation strength; None takes the checkpoint's.
        key_file: de-identification key file (created when missing); None: random key.
        dates: ``"remove"`` or ``"shift"``.
        device: torch device; None or ``"auto"``: cuda when available, else cpu.
        expected_sha256: refuse a checkpoint with another SHA-256.
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        model_path: str | os.PathLike,
        mu: float | None = None,
        key_file: str | os.PathLike | None = None,
        dates: str = "remove",
        device: str | None = None,
        expected_sha256: str | None = None,
        output_folder: str | os.PathLike | None = None,
        input_folder: str | os.PathLike | None = None,
        **kwargs,
    ) -> None:
        self.input_folder = input_folder  # only to name refused files by their pseudonym
        self.input_name = "study_selected_series_list"
        self.output_name = "anonymized"
        self.anonymizer = build_file_anonymizer(
            model_path, mu=mu, key_file=key_file, dates=dates, device=device,
            expected_sha256=expected_sha256, output_folder=output_folder,
        )
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.input_name)
        spec.output(self.output_name)

    def compute(self, op_input, op_output, context) -> None:
        selections = op_input.receive(self.input_name) or []
        batch = AnonymizationBatch()
        seen: set[int] = set()
        for study_selection in selections:
            for selected in study_selection.selected_series:
                for sop in selected.series.get_sop_instances():
                    native = sop.get_native_sop_instance()
                    if id(native) in seen:  # a series matched by two selections
                        continue
                    seen.add(id(native))
                    try:
                        batch.instances.append(anonymize_instance(self.anonymizer, native))
                    except (UnsupportedDicomError, DeidentificationError, ValueError) as err:
                        name = instance_label(native, self.anonymizer.deid.key, self.input_folder)
                        reason = f"{name}: {_scrub(str(err), getattr(native, 'filename', None))}"
                        logger.error("not anonymized: %s", reason)
                        batch.failures.append(reason)
        if not selections:
            logger.warning("no CR/DX/DR series found in the input: nothing to anonymize")
        logger.info("anonymized %d instance(s), %d refused", len(batch.instances), len(batch.failures))
        op_output.emit(batch, self.output_name)


class DeidentifiedDICOMWriterOperator(Operator):
    """Writes each :class:`AnonymizedInstance` as ``<output_folder>/<SOPInstanceUID>.dcm``.

    The file name is the new (keyed) SOP Instance UID, so no input name, which may carry PHI,
    reaches the output. Writing is atomic and verified by :func:`monai_prichexy.dicom.write_dataset`.
    Raises at the end when any instance was refused or could not be written.

    Named input:
        anonymized: an :class:`AnonymizationBatch`.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: str | os.PathLike, **kwargs) -> None:
        self.input_name = "anonymized"
        self.output_folder = Path(output_folder)
        self.written: list[Path] = []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.input_name).condition(ConditionType.MESSAGE_AVAILABLE)

    def compute(self, op_input, op_output, context) -> None:
        batch: AnonymizationBatch = op_input.receive(self.input_name)
        failures = list(batch.failures)
        self.output_folder.mkdir(parents=True, exist_ok=True)
        names: set[str] = set()
        for item in batch.instances:
            name = f"{item.sop_instance_uid}.dcm"
            if name in names:
                failures.append(f"{name}: duplicate SOP Instance UID, written once")
                logger.error("duplicate SOP instance in the input: %s written once", name)
                continue
            names.add(name)
            try:
                result = write_instance(item, self.output_folder / name)
            except (DicomWriteError, ValueError) as err:
                reason = f"{name}: {_scrub(str(err), item.source_path)}"
                failures.append(reason)
                logger.error("not written: %s", reason)
                continue
            if result.reencoded and result.reason:
                logger.info("%s: %s", name, result.reason)
            self.written.append(result.path)
        logger.info("wrote %d de-identified instance(s) to %s", len(self.written), self.output_folder)
        if failures:
            raise RuntimeError(
                f"{len(failures)} instance(s) were NOT anonymized (see the errors above); "
                f"{len(self.written)} were written"
            )
