"""Leak scan (issue #6, item 2): no identifying value of an input anywhere in what the
pipeline produces.

A PHI-laden tree (PHI in folder and file names, in DICOM headers -- nested sequences, private
tags, every person-name component, dates, UIDs, ids inside free text --, in PNG text chunks,
TIFF tags, JPEG comments / EXIF and NIfTI header strings and extensions) is anonymized by the
CLI; then every byte of every file under OUT (outputs, manifest, run settings, summary), every
output file and folder name, the CLI's stdout / stderr and the report folder are searched for
every identifying value, in several spellings (dates as YYYYMMDD, YYYY-MM-DD, DD.MM.YYYY, ...,
names with ``^`` and with spaces, each name part). Pydicom's own accepted test files get the
same scan with needles taken from their headers.

The scan looks inside what is stored compressed (:mod:`tests.leak_scan`): gzip (``.nii.gz``),
the dataset of a Deflated Explicit VR Little Endian DICOM file (which the writer keeps
deflated) and compressed PNG text chunks. The input tree holds a deflated DICOM file whose
header is full of PHI, and every needle is present somewhere in the (inflated) input tree.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGLosslessSV1, RLELossless

from tests.dicom_fixtures import (
    PHI_DATES,
    PATIENT_FAMILY,
    PATIENT_GIVEN,
    PATIENT_ID,
    PHI_VALUES,
    as_radiograph,
    make_radiograph_dataset,
    phi_needles,
    save,
    synthetic_chest,
)
from tests.leak_scan import layers, scan
from tests.reliability_corpus import STATE_DIR, digest_tree, pydicom_file, temp_files, tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
PHI_DIR = f"{PATIENT_FAMILY}_{PATIENT_GIVEN}_{PATIENT_ID}"
DEFLATED_NAME = f"deflated_{PATIENT_ID}.dcm"
TEXT = f"Patient {PATIENT_FAMILY}^{PATIENT_GIVEN} ({PATIENT_ID}) born 1961-03-14, seen 17.05.2023"

#: pydicom test files (CT, MR, SC) that the reader accepts once rewritten as DX radiographs
#: (:func:`as_radiograph`: Modality and SOP class only); their PHI must not survive either
PYDICOM_ACCEPTED = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "examples_overlay.dcm", "image_dfl.dcm"]

_ID_KEYWORDS = {
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress",
    "StationName", "DeviceSerialNumber", "PatientAddress", "PatientTelephoneNumbers", "RequestedProcedureID",
    "PerformedProcedureStepID", "ScheduledProcedureStepID", "DetectorID", "IssuerOfPatientID",
}
_INSTANCE_UIDS = {
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "MediaStorageSOPInstanceUID",
    "ReferencedSOPInstanceUID", "IrradiationEventUID", "SynchronizationFrameOfReferenceUID",
}


def _date_spellings(date: str) -> list[str]:
    y, m, d = date[:4], date[4:6], date[6:8]
    return [date, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{y}.{m}.{d}", f"{y}/{m}/{d}"]


def header_needles(ds: Dataset, min_len: int = 5) -> set[bytes]:
    """Identifying values of a DICOM header (any depth): names and their parts, ids, dates, instance UIDs."""
    found: set[str] = set()

    def visit(data: Dataset) -> None:
        for elem in data:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            values = elem.value if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue" else [elem.value]
            for value in values:
                text = str(value).strip() if value is not None else ""
                if not text:
                    continue
                if elem.VR == "PN":
                    found.add(text)
                    found.update(p.strip() for p in re.split(r"[\^=]", text))
                elif elem.VR == "DA" and re.fullmatch(r"\d{8}", text) and text[:4] > "1900":
                    found.update(_date_spellings(text))
                elif elem.VR == "DT" and re.match(r"\d{8}", text):
                    found.update(_date_spellings(text[:8]))
                elif elem.keyword in _ID_KEYWORDS:
                    found.add(text)
                elif elem.keyword in _INSTANCE_UIDS and not text.startswith("1.2.840.10008."):
                    found.add(text)

    visit(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        visit(meta)
    # a value that is also part of what the profile keeps on purpose (MR_small: institution
    # "TOSHIBA", manufacturer "TOSHIBA_MEC") is not identifying by itself
    kept = " ".join(str(ds.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName")).lower()
    return {n.encode("latin-1", "replace") for n in found if len(n) >= min_len and n.lower() not in kept}


def _pydicom_dates() -> list[str]:
    """The DA values (YYYYMMDD) in the headers of the pydicom test files of the tree."""
    import pydicom

    dates: set[str] = set()
    for name in PYDICOM_ACCEPTED:
        path = pydicom_file(name)
        if path is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            text = str(elem.value or "").strip() if elem.VR in ("DA", "DT") else ""
            if re.match(r"\d{8}", text) and text[:4] > "1900":
                dates.add(text[:8])
    return sorted(dates)


def spelled_out_phi() -> str:
    """Free text that spells every date in every format the scan looks for and every person name
    with spaces, as a referral letter would: the needles' other spellings are then really in
    the input tree (a needle that no input carries could never be found, whatever the code does)."""
    dates = [s for d in (*PHI_DATES, *_pydicom_dates()) for s in _date_spellings(d)]
    names = [v.replace("^", " ") for v in PHI_VALUES if "^" in v]
    return "Dates: " + ", ".join(dates) + ". Names: " + "; ".join(names) + "."


def all_needles() -> list[bytes]:
    needles = set(phi_needles())
    needles.update(v.encode("latin-1") for v in PHI_VALUES)
    needles.update(p.encode() for p in (PHI_DIR, "1961-03-14", "17.05.2023", "14.03.1961", "03/14/1961"))
    for name in PYDICOM_ACCEPTED:
        path = pydicom_file(name)
        if path is not None:
            import pydicom

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                needles.update(header_needles(pydicom.dcmread(path)))
    return sorted(needles)


# ------------------------------------------------------------------- the PHI tree


def _extra_hidden_phi(ds: Dataset) -> Dataset:
    """More hiding places than the fixture: a deeper sequence, ideographic PN groups, other
    spellings of the birth date, the patient id inside free text of nested items."""
    ds.PatientName = f"{ds.PatientName}=Kwaddel^Hiero=QUADDELBRINK^HIERONYMUS"
    item = Dataset()
    item.PatientID = PATIENT_ID
    item.IssuerOfPatientID = "NDH-KIS"
    inner = Dataset()
    inner.CodeValue = "X1"
    inner.CodingSchemeDesignator = "99LOCAL"
    inner.CodeMeaning = "chest"
    deeper = Dataset()
    deeper.PatientName = f"{PATIENT_FAMILY}^{PATIENT_GIVEN}"
    deeper.PatientBirthDate = "19610314"
    deeper.ImageComments = TEXT
    inner.ReferencedImageSequence = Sequence([deeper])
    item.IssuerOfPatientIDQualifiersSequence = Sequence([inner])
    ds.OtherPatientIDsSequence.append(item)
    ds.PatientComments = TEXT
    ds.RequestedProcedureDescription = TEXT
    ds.PerformedProcedureStepDescription = TEXT
    ds.AcquisitionDeviceProcessingDescription = TEXT
    ds.ProtocolName = TEXT
    ds.DerivationDescription = TEXT
    ds.AdmittingDiagnosesDescription = TEXT
    block = ds.private_block(0x0009, "HOSPITAL X", create=True)
    block.add_new(0x01, "UT", TEXT)
    block.add_new(0x02, "SQ", Sequence([deeper]))
    return ds


def _png_with_text(arr: np.ndarray) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", f"{PATIENT_FAMILY}^{PATIENT_GIVEN}")
    info.add_itxt("Comment", TEXT)
    info.add_text("Creation Time", "2023-05-17 10:15:30")
    info.add_text("Description", spelled_out_phi(), zip=True)  # zTXt: compressed
    info.add_itxt("Author", f"{PATIENT_GIVEN} {PATIENT_FAMILY} {PATIENT_ID}", zip=True)  # compressed iTXt
    bio = io.BytesIO()
    Image.fromarray(arr).save(bio, format="PNG", pnginfo=info)
    return bio.getvalue()


def _tiff_with_tags(arr: np.ndarray) -> bytes:
    from PIL import Image
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    ifd = ImageFileDirectory_v2()
    ifd[270] = TEXT  # ImageDescription
    ifd[315] = f"{PATIENT_FAMILY} {PATIENT_GIVEN}"  # Artist
    ifd[306] = "2023:05:17 10:15:30"  # DateTime
    ifd[305] = PATIENT_ID  # Software
    bio = io.BytesIO()
    Image.fromarray(arr).save(bio, format="TIFF", tiffinfo=ifd)
    return bio.getvalue()


def _jpeg_with_comment(arr: np.ndarray) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010E] = TEXT  # ImageDescription
    exif[0x013B] = f"{PATIENT_FAMILY}^{PATIENT_GIVEN}"  # Artist
    exif[0x0132] = "2023:05:17 10:15:30"
    bio = io.BytesIO()
    Image.fromarray(arr).save(bio, format="JPEG", quality=92, comment=TEXT.encode(), exif=exif.tobytes())
    return bio.getvalue()


def _nifti_with_strings(arr: np.ndarray, gz: bool) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(arr, np.eye(4))
    img.header["descrip"] = f"{PATIENT_FAMILY} {PATIENT_ID} 19610314".encode()
    img.header["aux_file"] = PATIENT_GIVEN.encode()
    img.header["intent_name"] = b"PID-8823-4471"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", TEXT.encode()))
    raw = img.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def build_phi_tree(root: Path) -> dict[str, Path]:
    """Accepted files with PHI everywhere, and two refused ones with PHI in their headers."""
    folder = root / PHI_DIR / "19610314" / f"{PATIENT_FAMILY}^{PATIENT_GIVEN} 1961-03-14"
    files: dict[str, Path] = {}

    def dcm(name: str, text: str | None = None, **kw) -> None:
        ds = _extra_hidden_phi(make_radiograph_dataset(48, 40, **kw))
        if text is not None:
            ds.AdditionalPatientHistory = text
        files[name] = save(ds, folder / name, raw=kw.get("transfer_syntax") is None and name.startswith("raw"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcm(f"{PATIENT_FAMILY}_{PATIENT_ID}.dcm")
        dcm(f"{PATIENT_GIVEN}_20230517_mono1.dcm", photometric="MONOCHROME1", signed=True, bits_stored=14, transfer_syntax=RLELossless)
        dcm(f"ACC-7731-0042_{PATIENT_FAMILY}.dcm", transfer_syntax=JPEGLosslessSV1)
        dcm(f"raw_{PATIENT_FAMILY}_{PATIENT_GIVEN}", bits_stored=10)  # no suffix, no preamble
        # the whole dataset deflated: its PHI is invisible to a raw byte search
        dcm(DEFLATED_NAME, text=spelled_out_phi(), transfer_syntax=DeflatedExplicitVRLittleEndian)
    gray8 = synthetic_chest(40, 48, bits_stored=8).astype(np.uint8)
    gray16 = synthetic_chest(40, 48, bits_stored=12).astype(np.uint16)
    for name, data in (
        (f"{PATIENT_FAMILY}_{PATIENT_GIVEN}.png", _png_with_text(gray16)),
        (f"{PATIENT_ID}.tif", _tiff_with_tags(gray8)),
        (f"{PATIENT_GIVEN}_14.03.1961.jpg", _jpeg_with_comment(gray8)),
        (f"{PATIENT_FAMILY}.nii", _nifti_with_strings(gray16.T.astype(np.int16), gz=False)),
        (f"{PATIENT_ID}_19610314.nii.gz", _nifti_with_strings(gray8.T.astype(np.float32), gz=True)),
    ):
        path = folder / name
        path.write_bytes(data)
        files[name] = path
    for name in PYDICOM_ACCEPTED:
        src = pydicom_file(name)
        if src is not None:
            files[name] = as_radiograph(src, root / "pydicom" / name)
    # refused files with PHI inside (names neutral: the operator's listing names failed files)
    refused = root / "refused"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _extra_hidden_phi(make_radiograph_dataset(48, 40, bits_stored=8))
        ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration = "RGB", 3, 0
        ds.PixelData = bytes(48 * 40 * 3)
        save(ds, refused / "colour.dcm")
        save(_extra_hidden_phi(make_radiograph_dataset(48, 40, burned_in="YES")), refused / "burned.dcm")
    return files


# ------------------------------------------------------------------------- the scan


def _tree_blobs(root: Path, label: str) -> dict[str, bytes]:
    blobs: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        blobs[f"{label} name {rel}"] = rel.encode("utf-8", "surrogateescape")
        if path.is_file():
            blobs[f"{label} file {rel}"] = path.read_bytes()
    return blobs


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "monai_prichexy.cli", *map(str, args)],
        cwd=REPO_ROOT, env=env, capture_output=True, timeout=400,
    )


FIXED_KEY = bytes(range(32)).hex()
"""The steward key of the CLI runs: with a random key a keyed UID or date could contain a short
needle (e.g. a 5-digit id) by chance in one run of many; fixed, the check is the same every run."""


def _fixed_key(path):
    path.write_text(FIXED_KEY + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def needles():
    found = all_needles()
    assert len(found) > 60
    return found


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("leak-weights") / "generator.pt")


def test_needles_are_present_in_the_inputs(tmp_path, needles):
    """Guard: the scan would find every needle if it were copied -- each one is in the (inflated)
    input tree, its file contents or its names; and the compressed inputs hide PHI from a raw
    byte search, so that only the inflating scan can see it there."""
    files = build_phi_tree(tmp_path / "in")
    blobs = _tree_blobs(tmp_path / "in", "input")
    inflated = [layer.lower() for data in blobs.values() for _, layer in layers(data)]
    missing = [n for n in needles if not any(n.lower() in blob for blob in inflated)]
    assert not missing, f"needles that no input carries (the scan could never find them): {missing}"
    for name in (DEFLATED_NAME, f"{PATIENT_ID}_19610314.nii.gz"):
        data = files[name].read_bytes()
        assert PATIENT_FAMILY.encode() not in data and PATIENT_GIVEN.encode() not in data, f"{name} is not compressed"
        hits = scan({name: data}, needles)
        assert any(PATIENT_GIVEN in h for h in hits) or any(PATIENT_FAMILY in h for h in hits), (name, hits)
    deflated = scan({DEFLATED_NAME: files[DEFLATED_NAME].read_bytes()}, needles)
    assert len(deflated) > 0.5 * len(phi_needles()), deflated  # the fixture's whole header, deflated


@pytest.mark.timeout(400)
@pytest.mark.parametrize("dates", ["remove", "shift"])
def test_no_phi_in_outputs_names_manifest_logs_or_report(tmp_path, needles, weights, dates):
    in_dir, out_dir, key = tmp_path / "in", tmp_path / "out", _fixed_key(tmp_path / "steward.key")
    files = build_phi_tree(in_dir)
    before = digest_tree(in_dir)
    result = _cli("anonymize", in_dir, out_dir, "--weights", weights, "--key-file", key, "--working-size", "32",
                  "--dates", dates, "--workers", "2", "--device", "cpu")
    assert result.returncode == 1, result.stderr.decode(errors="replace")  # the two refused files
    assert digest_tree(in_dir) == before
    assert temp_files(out_dir) == []
    import json

    records = [json.loads(line) for line in (out_dir / STATE_DIR / "manifest.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "ok" for r in records) == len(files), [r for r in records if r["status"] != "ok"]
    assert sum(r["status"] == "failed" for r in records) == 2

    blobs = _tree_blobs(out_dir, "OUT")
    blobs["stdout"] = result.stdout
    blobs["stderr"] = result.stderr
    # guard: the outputs of the deflated and gzip inputs are compressed and get inflated by the scan
    kinds = {label.split("/")[0] for data in blobs.values() for label, _ in layers(data)}
    assert {"deflated DICOM dataset", "gzip"} <= kinds, kinds
    leaks = scan(blobs, needles)
    assert not leaks, "\n".join(leaks[:50])


@pytest.mark.timeout(400)
def test_no_phi_in_the_report(tmp_path, needles, weights):
    from monai_prichexy.networks import AbnormalityClassifier, SiameseVerifier
    from monai_prichexy.weights import save_checkpoint

    in_dir, out_dir, report = tmp_path / "in", tmp_path / "out", tmp_path / "report"
    key = _fixed_key(tmp_path / "steward.key")
    build_phi_tree(in_dir)
    for name in PYDICOM_ACCEPTED:  # keep the report run small
        (in_dir / "pydicom" / name).unlink(missing_ok=True)
    verifier = save_checkpoint(tmp_path / "v.pt", SiameseVerifier(backbone="resnet10", widen_factor=0.25))
    classifier = save_checkpoint(tmp_path / "c.pt", AbnormalityClassifier(input_size=64))
    first = _cli("anonymize", in_dir, out_dir, "--weights", weights, "--key-file", key, "--working-size", "32",
                 "--device", "cpu", "--no-progress")
    assert first.returncode == 1, first.stderr.decode(errors="replace")
    result = _cli("report", in_dir, out_dir, "--verifier", verifier, "--classifier", classifier, "--out", report,
                  "--key-file", key, "--device", "cpu")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert (report / "report.md").is_file()
    blobs = _tree_blobs(report, "report")
    blobs["stdout"] = result.stdout
    blobs["stderr"] = result.stderr
    leaks = scan(blobs, needles)
    assert not leaks, "\n".join(leaks[:50])


# ------------------------------------------------------- library level, DICOM header


UNLISTED_TEXT = [
    # free-text attributes that PS3.15 Table E.1-1 does not list (the Basic Profile keeps them)
    "WindowCenterWidthExplanation",
    "DetectorDescription",
    "AcquisitionProtocolName",
    "ContentDescription",
]


@pytest.mark.parametrize("deflated", [False, True], ids=["explicit", "deflated"])
@pytest.mark.parametrize("dates", ["remove", "shift"])
def test_dicom_writer_output_has_no_phi(tmp_path, needles, dates, deflated):
    """One file through read -> deform -> write with the extra hiding places; a deflated input
    stays deflated, and its inflated dataset is what gets searched."""
    from tests.reliability_corpus import anonymize_one, file_anonymizer

    kw = {"transfer_syntax": DeflatedExplicitVRLittleEndian} if deflated else {}
    src = save(_extra_hidden_phi(make_radiograph_dataset(48, 40, **kw)), tmp_path / "in" / "x.dcm")
    assert scan({"input": src.read_bytes()}, [PATIENT_FAMILY.encode()]), "guard: the input carries the PHI"
    dst = anonymize_one(file_anonymizer(dates=dates), src, tmp_path / "out")
    data = dst.read_bytes()
    assert any(label == "deflated DICOM dataset" for label, _ in layers(data)) is deflated
    leaks = scan({"output": data}, needles)
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("keyword", UNLISTED_TEXT)
def test_phi_echoed_in_an_unlisted_free_text_attribute_is_removed(tmp_path, keyword):
    """The patient's own name / id / birth date repeated in a free-text attribute the profile
    does not list must not survive either (an echo of a value the profile removes)."""
    from tests.reliability_corpus import anonymize_one, file_anonymizer

    ds = make_radiograph_dataset(48, 40)
    setattr(ds, keyword, f"{PATIENT_FAMILY} {PATIENT_ID} 14.03.1961"[:64])
    src = save(ds, tmp_path / "in" / "x.dcm")
    dst = anonymize_one(file_anonymizer(), src, tmp_path / "out")
    data = dst.read_bytes()
    leaks = [n for n in (PATIENT_FAMILY.encode(), PATIENT_ID.encode(), b"14.03.1961") if n in data]
    assert not leaks, f"{keyword}: {leaks}"


def test_phi_echo_inside_a_nested_code_item_is_redacted_in_place():
    """Deep inside an unlisted sequence, a Type 1 code meaning that repeats the patient's name
    and birth date keeps its element (the item stays valid) but loses the PHI."""
    from monai_prichexy.dicom import DeidConfig, deidentify_dataset

    ds = make_radiograph_dataset(16, 16)
    code = ds.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[0]
    code.CodeMeaning = f"Modified for {PATIENT_GIVEN} {PATIENT_FAMILY}, *14.03.1961"
    out = deidentify_dataset(ds, DeidConfig(key=b"k" * 32))
    meaning = out.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[0].CodeMeaning
    assert meaning.startswith("Modified for ") and PATIENT_FAMILY not in meaning and "1961" not in meaning
    assert len(meaning) == len(code.CodeMeaning)


def test_echo_redaction_leaves_a_phi_free_header_alone():
    from monai_prichexy.dicom import DeidConfig, deidentify_dataset

    ds = make_radiograph_dataset(16, 16, phi=False)
    ds.WindowCenterWidthExplanation = "LUNG WINDOW"
    ds.ManufacturerModelName = "RadMaster 3000"
    out = deidentify_dataset(ds, DeidConfig(key=b"k" * 32))
    assert out.WindowCenterWidthExplanation == "LUNG WINDOW" and out.ManufacturerModelName == "RadMaster 3000"
