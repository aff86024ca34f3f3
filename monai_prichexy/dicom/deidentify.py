"""Header de-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

The per-attribute actions (D, Z, X, U, K and the conditional Z/D, X/Z, X/D, X/Z/D, X/Z/U*)
come from the tables that **dicom-anonymizer** ships (Table E.1-1 of the standard); the
engine that applies them is :mod:`.profile` (the library draws random UIDs and keeps them in
a process-global dict, and applies single-tag rules to the top level only, so it has its
own), the keyed values come from :mod:`.keys`. This module configures a run
(:class:`DeidConfig`), applies the profile to a copy of a dataset, redacts echoes of the
removed identifiers and records what was done.

How conditional actions are resolved for single-frame radiograph IODs (CR, DX, DR, SC, ...):

* ``X/Z``, ``X/D``, ``X/Z/D``: removed (X); none of them is Type 1/2 in these IODs.
* ``Z/D``: emptied, except dates/times which get a dummy value (``dates="remove"``) or are
  shifted (``dates="shift"``), and PatientID which gets the pseudonym.
* ``X/Z/U*`` (Referenced/Source Image Sequence): kept, items cleaned recursively, so the
  referenced instance UIDs are remapped consistently with the referenced images.
* ``U``: keyed remapping, ``"2.25." + int(HMAC-SHA256(key, uid)[:16])``: the same UID and key
  always give the same new UID (consistent across a batch and across runs), without the key
  it cannot be reversed. Applied to every listed UID attribute at any depth, including
  MediaStorageSOPInstanceUID in the file meta (which is rebuilt).
* Sequences that are not listed, or listed ``K`` / ``D``, are kept and their items cleaned
  with the same table; ``Z`` sequences are emptied; ``X`` sequences are removed.

On top of the profile:

* all private elements are removed (at any depth), as are elements with VR UN (content that
  cannot be inspected), group lengths and Data Set Trailing Padding;
* overlays (groups 60xx), curves (50xx), waveforms (group 5400), Icon Image Sequence (at any
  depth), Graphic Annotation Sequence, Encapsulated Document, Pixel Data Provider URL, every
  pixel-data element except the top-level Pixel Data (Float/Double Float Pixel Data, extended
  offset tables, retired 7Fxx groups, Pixel Data nested in items) are removed: nothing that can
  carry the original pixels survives;
* UI attributes that are not in the table are remapped too unless their value is a
  DICOM-defined UID (``1.2.840.10008.*``) or they name a class, scheme or transfer syntax;
  PN attributes that are not in the table are emptied, UR attributes (retrieve URLs can embed
  the original UIDs) removed, except coding-scheme URLs / URN code values;
* PatientName and PatientID become a pseudonym ``ANON-<10 hex>`` = HMAC(key, PatientID), so a
  patient's images stay linkable inside the release;
* ``dates="remove"`` (default): every DA, DT and TM element follows the profile (D: dummy value,
  Z/Z-D: emptied/dummy, X: removed), and the ones the table does not list are removed as well;
  ``dates="shift"`` (Retain Longitudinal Temporal Information with Modified Dates Option,
  113107): every DA and DT element at any depth is moved by the same per-patient offset
  (HMAC(key, PatientID) -> -``max_shift_days``..-1 days), so intervals are kept; times of day
  are kept; values that cannot be shifted (partial or malformed dates) are removed. Patient's
  Birth Date is emptied and Patient's Birth Time removed in both modes.
* ``retain_patient_characteristics=True`` (113108) keeps PatientAge, PatientSex, PatientSize,
  PatientWeight, PatientSexNeutered, PregnancyStatus and SmokingStatus.

Then PatientIdentityRemoved = YES, DeidentificationMethod (several complete LO values of at
most 64 characters: tool and version, profile, options and the caller's text) and DeidentificationMethodCodeSequence (113100 Basic Profile, 113103
Clean Graphics, plus 113107 / 113108 when used) are set, and LongitudinalTemporalInformation
Modified says MODIFIED or REMOVED.

Out of scope: text burned into the pixels. Images with ``BurnedInAnnotation == "YES"`` are
refused unless ``allow_burned_in=True``; the pixel deformation does not remove such text.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Literal

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from .errors import BurnedInAnnotationError
from .keys import DeidKey, as_key, date_shift_days, load_or_create_key, patient_pseudonym, remap_uid
from .profile import PATIENT_ID, PATIENT_NAME, PIXEL_DATA, PROFILE_TABLE, ProfileCleaner

__all__ = ["DeidConfig", "DeidResult", "deidentify", "deidentify_dataset", "copy_dataset"]

TOOL_NAME = "monai_prichexy"

# ------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class DeidConfig:
    """Options of :func:`deidentify`.

    Args:
        key: the secret (:class:`DeidKey` or >= 16 raw bytes).
        dates: ``"remove"`` (profile default) or ``"shift"`` (per-patient offset, 113107).
        method_info: extra values for DeidentificationMethod (must not contain PHI): a
            sequence of texts, or one text whose ``;``-separated items become separate values,
            e.g. ``"PriCheXy-Net pixel deformation; mu=0.01 smoothing=grid"``.
        allow_burned_in: accept ``BurnedInAnnotation == "YES"`` (pixel text stays!).
        retain_patient_characteristics: keep age, sex, size, weight, ... (113108).
        max_shift_days: offsets are drawn in ``-max_shift_days .. -1``.
        profile_table: the dicom-anonymizer table module.
    """

    key: DeidKey | bytes
    dates: Literal["remove", "shift"] = "remove"
    method_info: str | tuple[str, ...] = ""
    allow_burned_in: bool = False
    retain_patient_characteristics: bool = False
    max_shift_days: int = 365
    profile_table: str = PROFILE_TABLE

    @classmethod
    def from_key_file(cls, path: str | os.PathLike, *, create: bool = True, **options) -> DeidConfig:
        """Build a config from a key file (created with mode 0600 when absent and ``create``)."""
        return cls(key=load_or_create_key(path, create=create), **options)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", as_key(self.key))
        if not isinstance(self.method_info, str):
            object.__setattr__(self, "method_info", tuple(str(v) for v in self.method_info))
        if self.dates not in ("remove", "shift"):
            raise ValueError(f"dates must be 'remove' or 'shift', not {self.dates!r}")
        if self.max_shift_days < 1:
            raise ValueError("max_shift_days must be >= 1")


@dataclass
class DeidResult:
    """What :func:`deidentify` did (no PHI in here)."""

    dataset: Dataset
    pseudonym: str
    date_shift_days: int | None
    method_codes: list[str]
    removed: int = 0
    replaced: int = 0
    uids_remapped: int = 0
    notes: list[str] = field(default_factory=list)


_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113103": "Clean Graphics Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
}


# ------------------------------------------------------- echoes of removed identifiers

_FREE_TEXT_VRS = ("SH", "LO", "ST", "LT", "UT", "UC", "PN")
_ECHO_NAMES = ("PatientName", "PatientBirthName", "PatientMotherBirthName", "OtherPatientNames")
_ECHO_IDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "PatientAddress", "PatientTelephoneNumbers",
    "MedicalRecordLocator", "IssuerOfPatientID",
)


def _values(elem_value) -> list[str]:
    if elem_value is None:
        return []
    if isinstance(elem_value, (list, tuple, MultiValue)):
        return [str(v) for v in elem_value]
    return [str(elem_value)]


def _echo_patterns(ds: Dataset) -> list[re.Pattern]:
    """The patient's own identifiers in ``ds`` (names and their parts, ids, dates in several
    spellings), as patterns for text that the profile keeps but that repeats them.

    PS3.15 Table E.1-1 does not list every free-text attribute (e.g. Window Center & Width
    Explanation, Detector Description, Acquisition Protocol Name), so a name, id or birth
    date typed into one of them would otherwise survive.
    """
    texts: set[str] = set()
    words: set[str] = set()

    def visit(data: Dataset) -> None:
        for elem in data:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            keyword = elem.keyword or ""
            if keyword in _ECHO_NAMES:
                for value in _values(elem.value):
                    for group in value.split("="):
                        parts = [p.strip() for p in re.split(r"[\^]", group) if p.strip()]
                        if len(" ".join(parts)) >= 4:
                            texts.add(" ".join(parts))
                        for part in parts:
                            for word in re.split(r"[\s,]+", part):
                                if len(word.strip(".")) >= 3:
                                    (texts if len(word) >= 5 else words).add(word)
            elif keyword in _ECHO_IDS:
                texts.update(v.strip() for v in _values(elem.value) if len(v.strip()) >= 4)
            elif elem.VR in ("DA", "DT") and keyword != "":
                for value in _values(elem.value):
                    m = re.match(r"^(\d{4})(\d{2})(\d{2})", value.strip())
                    if m and m[1] >= "1900":
                        y, mo, d = m.groups()
                        texts.update({y + mo + d, f"{y}-{mo}-{d}", f"{d}.{mo}.{y}", f"{mo}/{d}/{y}", f"{y}.{mo}.{d}",
                                      f"{y}/{mo}/{d}", f"{d}/{mo}/{y}"})

    visit(ds)
    patterns = [re.compile(re.escape(t), re.IGNORECASE) for t in sorted(texts, key=len, reverse=True)]
    patterns += [re.compile(r"(?<![A-Za-z0-9])" + re.escape(w) + r"(?![A-Za-z0-9])", re.IGNORECASE) for w in sorted(words)]
    return patterns


def _redact_echoes(ds: Dataset, patterns: list[re.Pattern], top: bool = True) -> int:
    """Overwrite (same length, ``*``) every occurrence of ``patterns`` in free-text elements."""
    if not patterns:
        return 0
    changed = 0
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or []:
                changed += _redact_echoes(item, patterns, top=False)
            continue
        if elem.VR not in _FREE_TEXT_VRS or (top and int(elem.tag) in (PATIENT_NAME, PATIENT_ID)):
            continue
        values = _values(elem.value)
        redacted = []
        for value in values:
            for pattern in patterns:
                value = pattern.sub(lambda m: "*" * len(m.group(0)), value)
            redacted.append(value)
        if redacted != values:
            elem.value = redacted if len(redacted) > 1 else redacted[0]
            changed += 1
    return changed


def _patient_key(ds: Dataset) -> str:
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return pid
    for keyword in ("StudyInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return f"{keyword}:{value}"
    return ""


#: most characters of one LO value
_LO_MAX = 64


def _lo_values(text: str) -> list[str]:
    """``text`` as complete LO values: split at ``;`` into items, an item longer than 64
    characters wrapped at spaces. Only a single word longer than 64 characters (which no text
    of this package has) is cut, at 64."""
    values = []
    for item in str(text).replace("\\", "/").split(";"):
        item = " ".join(item.split())
        while item:
            if len(item) <= _LO_MAX:
                values.append(item)
                break
            cut = item.rfind(" ", 0, _LO_MAX + 1)
            cut = _LO_MAX if cut <= 0 else cut
            values.append(item[:cut].strip())
            item = item[cut:].strip()
    return values


def _method_values(config: DeidConfig, table: str) -> list[str]:
    """DeidentificationMethod (0012,0063), a multi-valued LO: one complete value per fact.

    Tool and version; profile and table; the date option; what is removed on top of the
    profile; retained characteristics and burned-in text accepted (when so); then the caller's
    ``method_info`` (a sequence of values, or a text whose ``;``-separated items become values).
    Each value has at most 64 characters and none is cut inside a word (see :func:`_lo_values`).
    """
    from .. import __version__

    values = [
        f"{TOOL_NAME} {__version__}",
        f"PS3.15 Annex E Basic Profile, dicom-anonymizer {table}",
        "dates shifted per patient" if config.dates == "shift" else "dates removed",
        "private tags, overlays, curves, icons removed",
    ]
    if config.retain_patient_characteristics:
        values.append("patient characteristics retained")
    if config.allow_burned_in:
        values.append("burned-in annotation accepted, not removed")
    info = config.method_info
    items = [info] if isinstance(info, str) else list(info or ())
    for item in items:
        values.extend(_lo_values(item))
    return values


def _code_item(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = _CODES[value]
    return item


def copy_dataset(ds: Dataset, keep_pixel_data: bool = True) -> Dataset:
    """A deep copy of ``ds`` (without its file meta), without the top-level Pixel Data unless ``keep_pixel_data``."""
    out = Dataset()
    for tag in ds.keys():
        if not keep_pixel_data and int(tag) == PIXEL_DATA:
            continue
        out.add(copy.deepcopy(ds[tag]))
    return out


def deidentify(ds: Dataset, config: DeidConfig, *, keep_pixel_data: bool = True) -> DeidResult:
    """De-identify a copy of ``ds`` (the input is not modified); see the module docstring.

    Raises:
        BurnedInAnnotationError: ``BurnedInAnnotation`` is ``YES`` and not allowed.
    """
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES" and not config.allow_burned_in:
        raise BurnedInAnnotationError(
            "BurnedInAnnotation is YES: text burned into the pixels is out of scope of this tool "
            "(the deformation does not remove it); pass allow_burned_in=True to process it anyway"
        )
    key: DeidKey = config.key  # type: ignore[assignment]
    patient = _patient_key(ds)
    pseudonym = patient_pseudonym(patient, key)
    offset = date_shift_days(patient, key, config.max_shift_days) if config.dates == "shift" else None

    out = copy_dataset(ds, keep_pixel_data)
    cleaner = ProfileCleaner(config, pseudonym, offset)
    cleaner.clean(out, top=True)
    cleaner.replaced += _redact_echoes(out, _echo_patterns(ds))

    # SOP Instance UID is Type 1: make sure there is one
    old_meta = getattr(ds, "file_meta", None)
    if not str(out.get("SOPInstanceUID", "") or "").strip():
        old = str(old_meta.get("MediaStorageSOPInstanceUID", "") or "") if old_meta is not None else ""
        out.SOPInstanceUID = remap_uid(old, key) if old else generate_uid()

    out.PatientIdentityRemoved = "YES"
    codes = ["113100", "113103"]
    if config.dates == "shift":
        codes.append("113107")
    if config.retain_patient_characteristics:
        codes.append("113108")
    out.DeidentificationMethod = _method_values(config, config.profile_table)
    out.DeidentificationMethodCodeSequence = Sequence([_code_item(c) for c in codes])
    out.LongitudinalTemporalInformationModified = "MODIFIED" if config.dates == "shift" else "REMOVED"

    # rebuilt file meta: no source AE titles, private information or original UIDs
    meta = FileMetaDataset()
    if old_meta is not None and old_meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = old_meta.TransferSyntaxUID
    if "SOPClassUID" in out:
        meta.MediaStorageSOPClassUID = out.SOPClassUID
    meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.file_meta = meta

    return DeidResult(
        dataset=out,
        pseudonym=pseudonym,
        date_shift_days=offset,
        method_codes=codes,
        removed=cleaner.removed,
        replaced=cleaner.replaced,
        uids_remapped=cleaner.remapped,
    )


def deidentify_dataset(ds: Dataset, config: DeidConfig, *, keep_pixel_data: bool = True) -> Dataset:
    """:func:`deidentify` returning only the de-identified copy."""
    return deidentify(ds, config, keep_pixel_data=keep_pixel_data).dataset

