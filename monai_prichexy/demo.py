"""``monai-prichexy demo OUT_DIR``: a synthetic input that runs the main job end to end.

Creates ``OUT_DIR/input/`` with DICOM radiographs whose headers (and folder names) are full of
made-up PHI -- MONOCHROME2 and MONOCHROME1, 12-bit, uncompressed and RLE Lossless -- and two
PNGs (8- and 16-bit) and its own key ``OUT_DIR/demo.prichexy-key`` (as ``keygen`` makes it,
when missing); ``monai-prichexy demo`` then runs ``anonymize`` into ``OUT_DIR/anonymized/``, ``report`` into
``OUT_DIR/report/`` and ``audit`` into ``OUT_DIR/audit/`` (with the shipped attack networks: the
demo has too few patients to train fresh ones) and prints where everything is and the equivalent
commands.

Without trained weights (``bundle/models/model.pt`` missing and no ``--weights``), small
*untrained* networks are written to ``OUT_DIR/models/``: the pipeline runs, but such outputs
are **not** anonymized in any meaningful way -- the demo says so loudly.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["make_demo_input", "synthetic_radiograph", "prepare_demo", "DemoPlan", "DEMO_PHI"]

#: the made-up identifying values of the demo headers (none may survive anonymization)
DEMO_PHI = {
    "PatientName": "Mustermann^Erika^Johanna",
    "PatientID": "PAT-20240105-7731",
    "PatientBirthDate": "19640812",
    "AccessionNumber": "ACC-DEMO-4471",
    "InstitutionName": "Demo Klinikum Sonnenberg",
    "ReferringPhysicianName": "Beispiel^Max^^Dr.",
    "StudyDate": "20240105",
}
_ROOT = "1.2.826.0.1.3680043.8.498.99"


def synthetic_radiograph(rows: int, cols: int, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A chest-like image (lungs, mediastinum, ribs, noise) as unsigned stored values."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    y /= rows - 1
    x /= cols - 1
    shift = rng.uniform(-0.03, 0.03, size=2)
    img = 0.8 + 0.1 * y
    for cx in (0.3 + shift[0], 0.7 + shift[1]):
        lung = ((x - cx) / rng.uniform(0.15, 0.19)) ** 2 + ((y - 0.5) / rng.uniform(0.3, 0.35)) ** 2
        img -= 0.5 * np.exp(-(lung**3))
    img += 0.06 * (np.sin(2 * np.pi * (y * rng.uniform(9, 11) + 0.8 * (x - 0.5) ** 2)) > 0.6) * (np.abs(x - 0.5) > 0.08)
    img += 0.15 * np.exp(-(((x - 0.5) / 0.05) ** 2))
    img += 0.02 * rng.standard_normal((rows, cols))
    img = np.clip(img, 0.0, 1.0)
    return np.rint(img * ((1 << bits) - 1)).astype(np.uint16 if bits > 8 else np.uint8)


def _dicom(path: Path, pixels: np.ndarray, *, photometric: str, modality: str, index: int, rle: bool = False) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, RLELossless

    sop_class = "1.2.840.10008.5.1.4.1.1.1.1" if modality == "DX" else "1.2.840.10008.5.1.4.1.1.1"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{_ROOT}.3.{index}"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{_ROOT}.3.{index}"
    ds.StudyInstanceUID = f"{_ROOT}.1"
    ds.SeriesInstanceUID = f"{_ROOT}.2.{index}"
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.BurnedInAnnotation = "NO"
    for keyword, value in DEMO_PHI.items():
        setattr(ds, keyword, value)
    ds.ContentDate = ds.AcquisitionDate = DEMO_PHI["StudyDate"]
    ds.StudyTime = "093015"
    ds.PatientSex = "F"
    ds.InstitutionAddress = "Sonnenweg 1, 12345 Sonnenberg"
    ds.ImageComments = f"Erika Mustermann ({DEMO_PHI['PatientID']}), seen 05.01.2024"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    stored = (4095 - pixels) if photometric == "MONOCHROME1" else pixels
    if rle:
        ds.compress(RLELossless, arr=stored.astype(np.uint16), generate_instance_uid=False)
    else:
        ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def make_demo_input(folder: str | os.PathLike, size: int = 512) -> Path:
    """Write the demo input tree under ``folder`` and return it."""
    from PIL import Image

    folder = Path(folder)
    study = folder / "Mustermann_Erika_PAT-20240105-7731" / "20240105_Thorax"
    _dicom(study / "IM0001", synthetic_radiograph(size, size + 64, seed=1), photometric="MONOCHROME2", modality="DX", index=1)
    _dicom(study / "IM0002.dcm", synthetic_radiograph(size, size, seed=2), photometric="MONOCHROME1", modality="CR", index=2)
    _dicom(study / "IM0003.dcm", synthetic_radiograph(size + 32, size, seed=3), photometric="MONOCHROME2", modality="DX", index=3, rle=True)
    png = folder / "png_export"
    png.mkdir(parents=True, exist_ok=True)
    Image.fromarray((synthetic_radiograph(size, size, bits=8, seed=4))).save(png / "mustermann_erika_pa.png")
    Image.fromarray(synthetic_radiograph(size, size, bits=16, seed=5)).save(png / "mustermann_erika_pa_16bit.png")
    return folder


def _demo_networks(models: Path, want_generator: bool) -> tuple[Path | None, Path | None, Path | None]:
    """Untrained stand-ins for what the bundle does not ship (None: the shipped network is used)."""
    import torch

    from .networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, SiameseVerifier
    from .bundle_files import bundle_root
    from .weights import save_checkpoint

    torch.manual_seed(0)
    bundle_models = bundle_root() / "models"
    generator = verifier = classifier = None
    if want_generator:
        generator = models / "demo_generator_UNTRAINED.pt"
        if not generator.exists():
            save_checkpoint(generator, PriCheXyNet(FlowFieldGenerator(init_features=8), mu=0.01), {"untrained": True})
    if not (bundle_models / "verifier.pt").is_file():
        verifier = models / "demo_verifier_UNTRAINED.pt"
        if not verifier.exists():
            save_checkpoint(verifier, SiameseVerifier("resnet10", widen_factor=0.25), {"untrained": True})
    if not (bundle_models / "classifier.pt").is_file():
        classifier = models / "demo_classifier_UNTRAINED.pt"
        if not classifier.exists():
            save_checkpoint(classifier, AbnormalityClassifier(), {"untrained": True})
    return generator, verifier, classifier


@dataclass(frozen=True)
class DemoPlan:
    """The demo's folders and the ``monai-prichexy`` command lines that run it (argv without the program)."""

    anonymized: Path
    report: Path
    audit: Path
    anonymize_cmd: list[str]
    report_cmd: list[str]
    audit_cmd: list[str]


def prepare_demo(out_dir: str | os.PathLike, weights: str | None = None, workers: int = 1) -> DemoPlan:
    """Create the demo input, its key and (when needed) untrained stand-in networks under ``out_dir``.

    Returns the command lines that anonymize it, report on it and audit it; ``monai-prichexy demo``
    runs them (this module does not import the CLI: the CLI drives the demo, not the reverse).
    """
    from .bundle_files import default_weights_path

    out_dir = Path(out_dir)
    input_dir = out_dir / "input"
    anonymized = out_dir / "anonymized"
    report = out_dir / "report"
    audit = out_dir / "audit"
    key_file = out_dir / "demo.prichexy-key"
    models = out_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    if not input_dir.exists():
        make_demo_input(input_dir)
    untrained = weights is None and not default_weights_path().is_file()
    generator, verifier, classifier = _demo_networks(models, untrained)
    weights = str(generator) if untrained else weights
    err = sys.stderr
    if untrained:
        print(
            "WARNING: no trained generator (bundle/models/model.pt) found: using UNTRAINED demo weights.\n"
            "         The pipeline runs end to end, but these outputs are NOT anonymized in any meaningful way.",
            file=err,
        )
    if not key_file.exists():  # the demo's own key, made as `monai-prichexy keygen` makes it
        from .dicom import create_key

        key = create_key(key_file)
        print(f"created the demo's key {key_file} (fingerprint {key.fingerprint}), as "
              f"`monai-prichexy keygen {key_file}` does", file=err)
    anonymize_cmd = ["anonymize", str(input_dir), str(anonymized), "--key-file", str(key_file), "--workers", str(workers)]
    if weights:
        anonymize_cmd += ["--weights", str(weights)]
    report_cmd = ["report", str(input_dir), str(anonymized), "--key-file", str(key_file), "--out", str(report)]
    for flag, stand_in in (("--verifier", verifier), ("--classifier", classifier)):
        if stand_in is not None:
            report_cmd += [flag, str(stand_in)]
    audit_cmd = ["audit", str(input_dir), str(anonymized), "--key-file", str(key_file), "--out", str(audit)]
    print(f"demo input: {input_dir}", file=err)
    print("commands:\n" + "".join(f"  monai-prichexy {' '.join(c)}\n" for c in (anonymize_cmd, report_cmd, audit_cmd)), file=err)
    return DemoPlan(anonymized, report, audit, anonymize_cmd, report_cmd, audit_cmd)
