"""One input file -> one anonymized output file (DICOM, PNG, JPEG, TIFF, NIfTI).

Files are read by :func:`~monai_prichexy.data.decode.decode_radiograph` and
:func:`~monai_prichexy.data.decode.radiograph_data` (native stored values; the core of
:class:`~monai_prichexy.data.RadiographReader`), the generator sees
:func:`~monai_prichexy.transforms.functional.network_view` of them (DICOM: the reader's LUT view;
other formats: min-max), and the pixels are deformed by :class:`Deformer`, a thin adapter over
:meth:`~monai_prichexy.transforms.functional.PriCheXyDeformation.deform_values`, the method
``DeformAnonymize.__call__`` runs: the same reader, view and transform as the bundle's
``inference.json`` and the README's ``Compose`` chain, hence the same pixels, without importing
MONAI (seconds of start-up per run). Decoding, the generator (on a GPU serialised by a lock),
warping at native size and encoding run in parallel threads.

DICOM (:meth:`FileAnonymizer.anonymize_dicom`): the flow is computed at the working resolution
from the reader's network view (Modality/VOI LUT, MONOCHROME1 inverted), resampled to the
native size, and the *stored* values are warped, rounded and clipped to the BitsStored range;
:func:`monai_prichexy.dicom.write_radiograph` de-identifies the header (PS3.15 Annex E, keyed
UIDs, DeidentificationMethod naming this tool, its version and mu) and writes it atomically
with the same rows, columns, bit depth, photometric interpretation and pixel representation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.decode import decode_radiograph, radiograph_data
from ..dicom import DeidConfig, DeidentificationError, UnsupportedDicomError, write_radiograph
from ..formats import SUFFIXES, UnsupportedImageError, write_image
from ..transforms.functional import PriCheXyDeformation, check_radiograph_array, network_view
from ..transforms.meta import RADIOGRAPH_VALUE_RANGE, RADIOGRAPH_VIEW_LUT, deformation_method_values
from ..weights import sha256_file

__all__ = ["Deformer", "FileAnonymizer", "FileOutcome"]


class Deformer:
    """Thread-safe PriCheXy-Net deformation of 2D arrays, identical to :class:`DeformAnonymize`.

    Args:
        weights: generator checkpoint path (or anything :class:`DeformAnonymize` accepts).
        mu: deformation strength; None = the checkpoint's.
        smoothing: None = the checkpoint's or "grid".
        working_size: resolution the generator sees; None = the checkpoint's, else 256.
        device: torch device; None = CPU.
        expected_sha256: checked before the checkpoint is loaded.
        precision: ``"fp32"`` (exact) or ``"bf16"`` (the generator under bfloat16 autocast; see
            :class:`DeformAnonymize`).
    """

    def __init__(self, weights, mu=None, smoothing=None, working_size=None, device=None, expected_sha256=None,
                 precision: str = "fp32") -> None:
        self.deformation = PriCheXyDeformation(
            weights, mu=mu, smoothing=smoothing, working_size=working_size, device=device, expected_sha256=expected_sha256,
            precision=precision,
        )
        self.weights_sha256 = sha256_file(weights) if isinstance(weights, (str, os.PathLike)) else None

    @property
    def network(self):
        return self.deformation.network

    @property
    def device(self) -> torch.device:
        return self.deformation.device

    @property
    def mu(self) -> float:
        return float(self.network.mu)

    @property
    def smoothing(self) -> str:
        return str(self.network.smoothing)

    @property
    def working_size(self):
        return self.network.working_size

    @property
    def precision(self) -> str:
        return self.deformation.precision

    def method_values(self) -> tuple[str, ...]:
        """Values for DeidentificationMethod and the manifest (no PHI), each a complete LO value."""
        return deformation_method_values(self.mu, self.smoothing, self.weights_sha256, self.precision)

    def describe(self) -> str:
        """:meth:`method_values` as one text (``;``-separated)."""
        return "; ".join(self.method_values())

    @torch.no_grad()
    def deform(self, values: np.ndarray, view: np.ndarray | None = None, value_range=None) -> np.ndarray:
        """Deform a ``(rows, cols)`` array with :meth:`DeformAnonymize.deform_values`; same shape and dtype.

        Args:
            values: the pixel values to warp (any integer or float dtype).
            view: the network's view in [0, 1] (same shape); None = min-max of ``values``,
                exactly as :class:`DeformAnonymize` computes it.
            value_range: (low, high) to clip integer outputs to; None = the dtype's range.
        """
        arr = np.asarray(values)
        check_radiograph_array(arr[None])
        view_t = None if view is None else torch.as_tensor(np.asarray(view, dtype=np.float32))
        out = self.deformation.deform_values(torch.as_tensor(arr), view=view_t)
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            low, high = (info.min, info.max) if value_range is None else (max(info.min, value_range[0]), min(info.max, value_range[1]))
            out = out.round_().clamp_(low, high)  # in place: the warped tensor is ours
        return out.cpu().numpy().astype(arr.dtype)


@dataclass
class FileOutcome:
    """What happened to one file; nothing in here names the input.

    Attributes:
        status: ``"ok"``, ``"failed"`` or ``"skipped"`` (not an image; nothing written).
        kind: detected format (``"dicom"``, ``"png"``, ...) or None.
        reason: why it failed or was skipped (no path, no header values).
        notes: remarks (lossy output, re-encoded transfer syntax, grayscale conversion, ...).
        lossy: the output is lossy-compressed (JPEG) or the input already was.
        shape, dtype: of the pixel data written.
        output_sha256: SHA-256 of the output file when the writer's verifying read-back computed
            it (DICOM); None = not computed here.
    """

    status: str
    kind: str | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    lossy: bool = False
    shape: tuple[int, int] | None = None
    dtype: str | None = None
    output_sha256: str | None = None


class FileAnonymizer:
    """Anonymize one file into one output path.

    Args:
        deformer: the pixel deformation.
        deid: header de-identification options (key, dates, allow_burned_in); its
            ``method_info`` is filled with :meth:`Deformer.method_values` when empty.
        jpeg_quality: quality of re-encoded JPEG outputs.
        allow_secondary_capture: accept DICOM Secondary Capture images; by default only CR / DX
            projection radiographs are (:func:`~monai_prichexy.dicom.reader.check_scope`).
    """

    def __init__(
        self, deformer: Deformer, deid: DeidConfig, jpeg_quality: int = 95, allow_secondary_capture: bool = False
    ) -> None:
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        self.deformer = deformer
        if not deid.method_info:
            deid = DeidConfig(
                key=deid.key,
                dates=deid.dates,
                method_info=deformer.method_values(),
                allow_burned_in=deid.allow_burned_in,
                retain_patient_characteristics=deid.retain_patient_characteristics,
                max_shift_days=deid.max_shift_days,
                profile_table=deid.profile_table,
            )
        self.deid = deid
        self.jpeg_quality = int(jpeg_quality)
        self.allow_secondary_capture = bool(allow_secondary_capture)

    @staticmethod
    def suffix(kind: str) -> str:
        return SUFFIXES[kind]

    def anonymize(self, src: str | os.PathLike, kind: str, dst: str | os.PathLike, data: bytes | None = None
                  ) -> FileOutcome:
        """Anonymize ``src`` (format ``kind``) into ``dst``; raises on refusal or error (naming ``src``).

        ``data``: the DICOM file's bytes when the caller has read them (each file is read once).
        """
        try:
            if kind == "dicom":
                return self.anonymize_dicom(src, dst, data=data)
            return self.anonymize_image(src, kind, dst)
        except (UnsupportedDicomError, UnsupportedImageError):
            raise  # their messages start with the file already
        except (DeidentificationError, ValueError) as err:  # burned-in text, NaN / infinite pixels, ...
            if os.fspath(src) in str(err):
                raise
            try:
                named = type(err)(f"{os.fspath(src)}: {err}")
            except Exception:  # an exception class with another signature
                named = ValueError(f"{os.fspath(src)}: {type(err).__name__}: {err}")
            raise named from None

    def deform(self, decoded) -> np.ndarray:
        """The deformed native values of a file decoded by :func:`~monai_prichexy.data.decode.decode_radiograph`
        (a :class:`~monai_prichexy.dicom.Radiograph` or an :class:`~monai_prichexy.formats.ImageFile`):
        the reader's values and meta, their :func:`~monai_prichexy.transforms.network_view`, then
        :meth:`Deformer.deform` clipped to the stored range -- the bundle's and the README chain's path."""
        values, meta = radiograph_data(decoded)
        view = network_view(values, meta.get(RADIOGRAPH_VIEW_LUT)).numpy()
        return self.deformer.deform(values, view=view, value_range=meta[RADIOGRAPH_VALUE_RANGE])

    def anonymize_dicom(self, src: str | os.PathLike, dst: str | os.PathLike, data: bytes | None = None) -> FileOutcome:
        rad = decode_radiograph(src, "dicom", allow_secondary_capture=self.allow_secondary_capture, data=data)
        warped = self.deform(rad)
        rad_view_shape = rad.shape
        rad.view = None  # free the float view before writing
        written = write_radiograph(rad, warped, dst, deid=self.deid, sha256=True)  # the manifest's output hash
        notes = list(rad.notes)
        if written.reencoded and written.reason:
            notes.append(f"transfer syntax {written.source_transfer_syntax} -> {written.transfer_syntax}: {written.reason}")
        if written.clipped:
            notes.append(f"{written.clipped} values clipped to the BitsStored range")
        if rad.lossy:
            notes.append("input pixels were lossy-compressed (LossyImageCompression = 01 kept)")
        return FileOutcome(
            "ok", "dicom", notes=notes, lossy=rad.lossy, shape=tuple(rad_view_shape), dtype=str(warped.dtype),
            output_sha256=written.sha256,
        )

    def anonymize_image(self, src: str | os.PathLike, kind: str, dst: str | os.PathLike) -> FileOutcome:
        image = decode_radiograph(src, kind)
        warped = self.deform(image)
        write_image(image, warped, dst, jpeg_quality=self.jpeg_quality)
        notes = list(image.notes)
        if image.lossy_output:
            notes.append(f"JPEG output is lossy (re-encoded at quality {self.jpeg_quality})")
        return FileOutcome(
            "ok", kind, notes=notes, lossy=image.lossy_output, shape=tuple(warped.shape), dtype=str(warped.dtype)
        )
