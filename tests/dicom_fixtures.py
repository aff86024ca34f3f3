"""Synthetic DICOM radiographs with a header full of PHI, for tests.

* :func:`make_radiograph_dataset` builds a CR/DX dataset (pixels: a smooth synthetic chest)
  with PHI everywhere a real file has it: PatientName with all five PN components, IDs, birth
  date, accession, institution, physicians, operators, free text mentioning the name and
  dates, instance UIDs, a private block, nested sequences, an overlay, a curve, a waveform and
  an Icon Image Sequence (whose pixels carry a marker).
* :func:`save` writes it as a DICOM Part 10 file (or a raw dataset without preamble).
* :data:`PHI_VALUES` lists the identifying values; :func:`phi_needles` expands them into the
  byte strings a leak scan looks for (name parts, dates in other formats, UIDs, markers).
* :func:`encode_jpeg_lossless` is a tiny JPEG Lossless (process 14, SV1) encoder, since
  pydicom cannot encode that transfer syntax.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
)

__all__ = [
    "PATIENT_NAME",
    "PATIENT_ID",
    "PHI_VALUES",
    "PHI_UIDS",
    "PHI_DATES",
    "PIXEL_MARKERS",
    "make_radiograph_dataset",
    "synthetic_chest",
    "save",
    "as_radiograph",
    "phi_needles",
    "encode_jpeg_lossless",
    "encode_jpeg_baseline",
]

_ROOT = "1.2.826.0.1.3680043.8.498."

PATIENT_FAMILY = "Quaddelbrink"
PATIENT_GIVEN = "Hieronymus"
PATIENT_MIDDLE = "Ottokar"
PATIENT_PREFIX = "Prof. Dr."
PATIENT_SUFFIX = "Jr. III"
PATIENT_NAME = f"{PATIENT_FAMILY}^{PATIENT_GIVEN}^{PATIENT_MIDDLE}^{PATIENT_PREFIX}^{PATIENT_SUFFIX}"
PATIENT_ID = "PID-8823-4471"
BIRTH_DATE = "19610314"
STUDY_DATE = "20230517"
CREATION_DATE = "20230519"
ORDER_DATE = "20230302"
PHI_DATES = [BIRTH_DATE, STUDY_DATE, CREATION_DATE, ORDER_DATE]

STUDY_UID = _ROOT + "20230517.8823447101"
SERIES_UID = _ROOT + "20230517.8823447102"
SOP_UID = _ROOT + "20230517.8823447103"
FRAME_OF_REF_UID = _ROOT + "20230517.8823447104"
IRRADIATION_UID = _ROOT + "20230517.8823447105"
PRIOR_SOP_UID = _ROOT + "20220101.8823447106"
PRIOR_STUDY_UID = _ROOT + "20220101.8823447107"
PRIVATE_UID = _ROOT + "77.8823447108"
PHI_UIDS = [STUDY_UID, SERIES_UID, SOP_UID, FRAME_OF_REF_UID, IRRADIATION_UID, PRIOR_SOP_UID, PRIOR_STUDY_UID,
            PRIVATE_UID]

#: byte markers hidden in pixel-carrying elements that must not survive
PIXEL_MARKERS = [b"ICONPIXELSECRET!", b"OVERLAYBITSECRET", b"CURVEDATASECRET!", b"WAVEFORMSECRET!!"]

PHI_VALUES = [
    PATIENT_NAME,
    PATIENT_ID,
    "MRN-55120937",  # other patient IDs
    "KV-4471-99",  # insurance / other ID in a sequence
    BIRTH_DATE,
    "062Y",  # patient age
    "Lindenallee 5, 99734 Nordhausen",  # patient address
    "+49 3631 5550199",  # telephone
    "Quaddelbrink^Walburga",  # mother's birth name
    "ACC-7731-0042",  # accession number
    "St. Wendelinus Klinikum Nordhausen",  # institution
    "Wendelinusweg 17, 99734 Nordhausen",  # institution address
    "Radiologie Haus C",  # department
    "Brummelkamp^Adelheid^^Dr. med.",  # referring physician
    "Feuerstein^Kunigunde",  # operator
    "Tiefenbacher^Ignaz",  # performing physician
    "Ruebsamen^Gottlieb",  # reading physician
    "XR-ROOM-7-NDH",  # station name
    "SN-7741-AX",  # device serial number
    "DET-90210-QZ",  # detector id
    "STUDY-31337",  # study id
    "REQ-66120",  # requested procedure id
    "SPS-55019",  # scheduled step id
    STUDY_DATE,
    CREATION_DATE,
    ORDER_DATE,
    *PHI_UIDS,
]


def synthetic_chest(rows: int, cols: int, bits_stored: int = 12, signed: bool = False, seed: int = 0) -> np.ndarray:
    """A smooth chest-like image (two dark lungs, bright mediastinum and borders) as stored values."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    y /= max(rows - 1, 1)
    x /= max(cols - 1, 1)
    img = 0.75 + 0.1 * y
    for cx in (0.3, 0.7):
        lung = ((x - cx) / 0.17) ** 2 + ((y - 0.5) / 0.32) ** 2
        img -= 0.45 * np.exp(-(lung**3))
    img += 0.03 * rng.standard_normal((rows, cols))
    img = np.clip(img, 0.0, 1.0)
    hi = (1 << bits_stored) - 1
    values = np.rint(img * hi).astype(np.int64)
    if signed:
        values -= 1 << (bits_stored - 1)
    return values


def _person_item(name: str) -> Dataset:
    item = Dataset()
    item.PersonName = name
    return item


def make_radiograph_dataset(
    rows: int = 64,
    cols: int = 80,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    phi: bool = True,
    *,
    modality: str = "DX",
    bits_allocated: int | None = None,
    pixels: np.ndarray | None = None,
    window: tuple[float, float] | None | str = "auto",
    rescale: tuple[float, float] | None = None,
    burned_in: str = "NO",
    seed: int = 0,
) -> Dataset:
    """A CR/DX dataset (``modality`` "DX" or "CR") with file meta, pixels and (``phi``) PHI.

    ``transfer_syntax``: native ones are written as is; RLE Lossless / JPEG 2000 (Lossless) are
    compressed by pydicom, JPEG Lossless SV1 by :func:`encode_jpeg_lossless`, JPEG Baseline by
    Pillow (8-bit only). ``window="auto"`` sets a window covering the data; ``None`` none.
    """
    if bits_allocated is None:
        bits_allocated = 8 if bits_stored <= 8 else 16
    ts = UID(str(transfer_syntax))
    if pixels is None:
        pixels = synthetic_chest(rows, cols, bits_stored, signed, seed)
    dtype = np.dtype(("<i" if signed else "<u") + str(bits_allocated // 8))
    arr = np.asarray(pixels).astype(dtype)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = DigitalXRayImageStorageForPresentation if modality == "DX" else UID("1.2.840.10008.5.1.4.1.1.1")
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = SOP_UID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.SourceApplicationEntityTitle = "NDH_PACS_7"

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = SOP_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.FrameOfReferenceUID = FRAME_OF_REF_UID
    ds.Modality = modality
    ds.Manufacturer = "ACME Imaging"
    ds.ManufacturerModelName = "RadMaster 3000"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = burned_in
    ds.PresentationIntentType = "FOR PRESENTATION"

    if phi:
        _add_phi(ds)
    else:
        ds.PatientName = ""
        ds.PatientID = ""
        ds.StudyDate = STUDY_DATE
        ds.ContentDate = STUDY_DATE

    # image pixel module
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if window == "auto":
        lo, hi = float(arr.min()), float(arr.max())
        if rescale is not None:
            lo, hi = sorted((lo * rescale[0] + rescale[1], hi * rescale[0] + rescale[1]))
        ds.WindowCenter = round((lo + hi) / 2, 2)
        ds.WindowWidth = round(max(hi - lo, 2.0), 2)
    elif window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"

    _set_pixels(ds, arr, ts)
    return ds


def _add_phi(ds: Dataset) -> None:
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = "NDH-KIS"
    ds.OtherPatientIDs = "MRN-55120937"
    other = Dataset()
    other.PatientID = "KV-4471-99"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientBirthTime = "063000"
    ds.PatientSex = "M"
    ds.PatientAge = "062Y"
    ds.PatientSize = 1.82
    ds.PatientWeight = 91.5
    ds.PatientAddress = "Lindenallee 5, 99734 Nordhausen"
    ds.PatientTelephoneNumbers = "+49 3631 5550199"
    ds.PatientMotherBirthName = "Quaddelbrink^Walburga"
    ds.AdditionalPatientHistory = f"Smoker. Son of {PATIENT_FAMILY}^Walburga, born 1961-03-14."
    ds.PatientComments = f"Call {PATIENT_GIVEN} {PATIENT_FAMILY} on +49 3631 5550199"

    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.AcquisitionDate = STUDY_DATE
    ds.ContentDate = STUDY_DATE
    ds.InstanceCreationDate = CREATION_DATE
    ds.StudyTime = "101530"
    ds.SeriesTime = "101545"
    ds.AcquisitionTime = "101602"
    ds.ContentTime = "101602"
    ds.InstanceCreationTime = "083000"
    ds.AcquisitionDateTime = STUDY_DATE + "101602.250000"
    ds.AccessionNumber = "ACC-7731-0042"
    ds.StudyID = "STUDY-31337"
    ds.InstitutionName = "St. Wendelinus Klinikum Nordhausen"
    ds.InstitutionAddress = "Wendelinusweg 17, 99734 Nordhausen"
    ds.InstitutionalDepartmentName = "Radiologie Haus C"
    ds.ReferringPhysicianName = "Brummelkamp^Adelheid^^Dr. med."
    ds.OperatorsName = "Feuerstein^Kunigunde"
    ds.PerformingPhysicianName = "Tiefenbacher^Ignaz"
    ds.NameOfPhysiciansReadingStudy = "Ruebsamen^Gottlieb"
    ds.StationName = "XR-ROOM-7-NDH"
    ds.DeviceSerialNumber = "SN-7741-AX"
    ds.DetectorID = "DET-90210-QZ"
    ds.StudyDescription = f"Thorax pa {PATIENT_FAMILY} {PATIENT_GIVEN} *14.03.1961"
    ds.SeriesDescription = f"PA for {PATIENT_FAMILY}, 2023-05-17"
    ds.ImageComments = f"Pt {PATIENT_FAMILY} ({PATIENT_ID}) dob 03/14/1961, seen 17.05.2023"
    ds.IrradiationEventUID = IRRADIATION_UID

    request = Dataset()
    request.RequestedProcedureID = "REQ-66120"
    request.ScheduledProcedureStepID = "SPS-55019"
    request.RequestedProcedureDescription = f"Thorax for {PATIENT_FAMILY}"
    request.AccessionNumber = "ACC-7731-0042"
    request.IssueDateOfImagingServiceRequest = ORDER_DATE
    ds.RequestAttributesSequence = Sequence([request])

    ref = Dataset()
    ref.ReferencedSOPClassUID = DigitalXRayImageStorageForPresentation
    ref.ReferencedSOPInstanceUID = PRIOR_SOP_UID
    ref.PatientName = PATIENT_NAME  # odd, but a nested PN must be cleaned too
    ref.ContentDate = ORDER_DATE
    ds.ReferencedImageSequence = Sequence([ref])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = PRIOR_STUDY_UID
    ds.ReferencedStudySequence = Sequence([study_ref])

    # Contributing Equipment is not in Table E.1-1: its items must be cleaned recursively
    equipment = Dataset()
    equipment.Manufacturer = "ACME Imaging"
    equipment.InstitutionName = "St. Wendelinus Klinikum Nordhausen"
    equipment.InstitutionAddress = "Wendelinusweg 17, 99734 Nordhausen"
    equipment.StationName = "XR-ROOM-7-NDH"
    equipment.OperatorsName = "Feuerstein^Kunigunde"
    equipment.ContributionDateTime = STUDY_DATE + "101700"
    equipment.ContributionDescription = f"Processed for {PATIENT_FAMILY}"
    purpose = Dataset()
    purpose.CodeValue = "109103"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Modifying Equipment"
    equipment.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.ContributingEquipmentSequence = Sequence([equipment])

    # private block with PHI, at top level and nested
    block = ds.private_block(0x0029, "ACME PHI 1.0", create=True)
    block.add_new(0x10, "LO", PATIENT_NAME.replace("^", " "))
    block.add_new(0x11, "DA", BIRTH_DATE)
    block.add_new(0x12, "UI", PRIVATE_UID)
    block.add_new(0x13, "LO", PATIENT_ID)
    equipment.private_block(0x0031, "ACME NESTED", create=True).add_new(0x01, "LO", PATIENT_ID)

    # overlay (group 6000) with a description naming the patient and marked bits
    ds.add_new(0x60000010, "US", 16)  # OverlayRows
    ds.add_new(0x60000011, "US", 16)  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
    ds.add_new(0x60000022, "LO", f"marker {PATIENT_FAMILY}")  # OverlayDescription
    ds.add_new(0x60003000, "OW", PIXEL_MARKERS[1] + bytes(16))  # OverlayData (256 bits)
    # curve (retired group 5000)
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50000010, "US", 8)
    ds.add_new(0x50003000, "OB", PIXEL_MARKERS[2])
    # waveform
    wave = Dataset()
    wave.add_new(0x003A0005, "US", 1)  # NumberOfWaveformChannels
    wave.add_new(0x003A0010, "UL", 8)  # NumberOfWaveformSamples
    wave.add_new(0x54001010, "OW", PIXEL_MARKERS[3])  # WaveformData
    ds.WaveformSequence = Sequence([wave])
    # icon image with its own pixel data
    icon = Dataset()
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.Rows, icon.Columns = 4, 8
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.add_new(0x7FE00010, "OB", PIXEL_MARKERS[0] + bytes(16))
    ds.IconImageSequence = Sequence([icon])


def _set_pixels(ds: Dataset, arr: np.ndarray, ts: UID) -> None:
    ds.file_meta.TransferSyntaxUID = ts
    if not ts.is_encapsulated:
        order = ">" if ts == "1.2.840.10008.1.2.2" else "<"  # Explicit VR Big Endian
        data = arr.astype(arr.dtype.newbyteorder(order)).tobytes()
        if len(data) % 2:
            data += b"\x00"
        ds.add_new(0x7FE00010, "OW" if arr.dtype.itemsize == 2 else "OB", data)
        return
    if ts == JPEGLosslessSV1 or ts == "1.2.840.10008.1.2.4.57":
        if ds.PixelRepresentation:
            raise ValueError("the fixture JPEG lossless encoder handles unsigned data only")
        frame = encode_jpeg_lossless(arr, int(ds.BitsStored))
    elif ts == JPEGBaseline8Bit:
        frame = encode_jpeg_baseline(arr)
        ds.LossyImageCompression = "01"
    elif ts == "1.2.840.10008.1.2.4.91":  # JPEG 2000 (lossy allowed): make it lossy
        ds.compress(ts, arr=arr, generate_instance_uid=False, j2k_cr=[8])
        ds.LossyImageCompression = "01"
        return
    else:
        ds.compress(ts, arr=arr, generate_instance_uid=False)
        return
    ds.add_new(0x7FE00010, "OB", encapsulate([frame]))
    ds["PixelData"].is_undefined_length = True


def save(ds: Dataset, path: str | os.PathLike, *, raw: bool = False) -> Path:
    """Write ``ds`` as a Part 10 file (or, ``raw=True``, without preamble and file meta)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw:
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            raise ValueError("a raw dataset needs native pixel data")
        bare = Dataset(ds)  # same elements, no file meta
        bare.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def as_radiograph(src: str | os.PathLike, dst: str | os.PathLike, modality: str = "DX") -> Path:
    """Copy the DICOM file ``src`` to ``dst`` as a projection radiograph: Modality ``modality``
    ("DX" or "CR") and the matching SOP class (Digital X-Ray Image Storage - For Presentation, or
    CR Image Storage); everything else (PHI, pixels, transfer syntax) stays as it was.

    For pydicom's CT/MR/SC sample files, which the reader refuses as they are (out of scope).
    """
    import warnings

    import pydicom

    sop_class = DigitalXRayImageStorageForPresentation if modality == "DX" else UID("1.2.840.10008.5.1.4.1.1.1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
        ds.Modality = modality
        ds.SOPClassUID = sop_class
        if getattr(ds, "file_meta", None) is not None:
            ds.file_meta.MediaStorageSOPClassUID = sop_class
        dst = Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst)
    return dst


def _date_formats(date: str) -> list[str]:
    y, m, d = date[:4], date[4:6], date[6:8]
    return [date, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{y}.{m}.{d}", f"{y}/{m}/{d}"]


def phi_needles(values=None) -> list[bytes]:
    """Byte strings that must not occur in a de-identified file.

    Every value of :data:`PHI_VALUES` (or ``values``), the parts of person names (``^`` and
    spaces split, parts of three or more characters), dates in several formats, UIDs, and the
    pixel markers.
    """
    values = PHI_VALUES if values is None else values
    needles: set[str] = set()
    for value in values:
        needles.add(value)
        if len(value) == 8 and value.isdigit():
            needles.update(_date_formats(value))
        if "^" in value:
            needles.add(value.replace("^", " ").strip())
            for part in value.split("^"):
                part = part.strip()
                if len(part) >= 3 and part not in ("Dr.", "med."):
                    needles.add(part)
    for part in (PATIENT_FAMILY, PATIENT_GIVEN, PATIENT_MIDDLE, PATIENT_PREFIX, PATIENT_SUFFIX):
        needles.add(part)
    out = [n.encode("latin-1") for n in sorted(needles)]
    return out + list(PIXEL_MARKERS)


# ------------------------------------------------------------------ test-only encoders


def encode_jpeg_baseline(arr: np.ndarray, quality: int = 90) -> bytes:
    """8-bit grayscale JPEG baseline (lossy) via Pillow."""
    from PIL import Image

    if arr.dtype != np.uint8:
        raise ValueError("JPEG baseline needs uint8")
    bio = io.BytesIO()
    Image.fromarray(arr, mode="L").save(bio, format="JPEG", quality=quality)
    return bio.getvalue()


def _marker(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + (len(payload) + 2).to_bytes(2, "big") + payload


def encode_jpeg_lossless(arr: np.ndarray, precision: int) -> bytes:
    """Minimal JPEG Lossless (ITU T.81 process 14, predictor 1) encoder for unsigned data.

    One Huffman table in which each of the 17 difference categories gets a 5-bit code.
    """
    arr = np.asarray(arr, dtype=np.int64)
    rows, cols = arr.shape
    pred = np.empty_like(arr)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = arr[0, :-1]
    pred[1:, 0] = arr[:-1, 0]
    pred[1:, 1:] = arr[1:, :-1]
    diff = (arr - pred) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff)

    out = bytearray()
    acc = 0
    nbits = 0

    def put(value: int, length: int) -> None:
        nonlocal acc, nbits
        acc = (acc << length) | (value & ((1 << length) - 1))
        nbits += length
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0x00)
        acc &= (1 << nbits) - 1 if nbits else 0

    for d in diff.ravel().tolist():
        if d == 0:
            put(0, 5)
            continue
        if d == -32768:
            put(16, 5)
            continue
        ssss = abs(d).bit_length()
        put(ssss, 5)
        put(d if d > 0 else d + (1 << ssss) - 1, ssss)
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)

    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    counts = [0] * 16
    counts[4] = 17  # 17 codes of length 5
    dht = bytes([0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # Ns=1, Cs=1, Td/Ta=0, Ss=predictor 1, Se=0, Ah/Al=0
    return b"\xff\xd8" + _marker(0xC3, sof) + _marker(0xC4, dht) + _marker(0xDA, sos) + bytes(out) + b"\xff\xd9"
