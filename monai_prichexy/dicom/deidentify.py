"""Header de-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

The per-attribute actions (D, Z, X, U, K and the conditional Z/D, X/Z, X/D, X/Z/D, X/Z/U*)
come from the tables that **dicom-anonymizer** ships (``dicomanonymizer.simpledicomanonymizer.
initialize_actions``, Table E.1-1 of the standard, newest edition in the package). This
module applies them with its own engine, because the pipeline needs things the library's
``anonymize_dataset`` does not do: keyed, reproducible UID remapping (the library draws
random UIDs and keeps them in a process-global dict), the actions applied inside *every*
nested sequence item (the library applies single-tag rules to the top level only), date
shifting, and pseudonyms. For the values themselves (dummy ``D`` values, ``Z`` emptying by
VR) the library's own ``replace`` / ``empty`` functions are called.

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
import datetime as _dt
import hmac
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import generate_uid

from ..hashing import hmac_sha256
from .errors import BurnedInAnnotationError, DeidentificationError

__all__ = [
    "DeidKey",
    "DeidConfig",
    "DeidResult",
    "PROFILE_TABLE",
    "deidentify",
    "deidentify_dataset",
    "remap_uid",
    "patient_pseudonym",
    "date_shift_days",
    "shift_date",
    "shift_datetime",
    "load_key",
    "create_key",
    "load_or_create_key",
]

logger = logging.getLogger(__name__)

#: dicom-anonymizer table used by default (Table E.1-1 of PS3.15, edition 2026c)
PROFILE_TABLE = "dicomfields_2026c"

TOOL_NAME = "monai_prichexy"

# ---------------------------------------------------------------------------------- keys


class DeidKey:
    """The secret behind UID remapping, pseudonyms and date offsets (>= 16 bytes).

    ``repr`` never shows the secret; :attr:`fingerprint` identifies a key in reports.
    """

    __slots__ = ("_secret",)
    MIN_BYTES = 16

    def __init__(self, secret: bytes | bytearray) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError("DeidKey needs bytes")
        if len(secret) < self.MIN_BYTES:
            raise ValueError(f"a de-identification key needs at least {self.MIN_BYTES} bytes")
        self._secret = bytes(secret)

    @classmethod
    def generate(cls, nbytes: int = 32) -> DeidKey:
        return cls(secrets.token_bytes(nbytes))

    @classmethod
    def from_hex(cls, text: str) -> DeidKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as exc:
            raise ValueError(f"invalid hex key: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DeidKey:
        return load_key(path)

    def to_hex(self) -> str:
        return self._secret.hex()

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256(key, message)."""
        return hmac_sha256(self._secret, message)

    @property
    def fingerprint(self) -> str:
        """12 hex digits that identify the key without revealing it."""
        return self.digest(b"monai_prichexy key fingerprint").hex()[:12]

    def __repr__(self) -> str:
        return f"DeidKey(<secret>, fingerprint={self.fingerprint})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeidKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def _as_key(key: DeidKey | bytes | bytearray) -> DeidKey:
    return key if isinstance(key, DeidKey) else DeidKey(key)


def load_key(path: str | os.PathLike) -> DeidKey:
    """Read a key file (hex text). Warns when group/others can read it."""
    path = Path(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("key file %s is accessible by group/others (mode %o); use chmod 600", path, mode & 0o777)
    return DeidKey.from_hex(path.read_text(encoding="ascii"))


def create_key(path: str | os.PathLike, nbytes: int = 32) -> DeidKey:
    """Create a new key file: ``nbytes`` random bytes as hex, mode 0600. Fails if it exists."""
    path = Path(path)
    key = DeidKey.generate(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (key.to_hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_or_create_key(path: str | os.PathLike, create: bool = True) -> DeidKey:
    """Load the key in ``path``; create it (0600) when it does not exist and ``create``."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"key file {path} does not exist")
        try:
            return create_key(path)
        except FileExistsError:  # created meanwhile by a parallel job
            pass
    return load_key(path)


# ----------------------------------------------------------------- keyed derived values


def remap_uid(uid: str, key: DeidKey | bytes) -> str:
    """``"2.25." + str(int(HMAC-SHA256(key, uid)[:16]))``: same input and key -> same UID."""
    value = str(uid).strip().rstrip("\x00")
    digest = _as_key(key).digest(value.encode("ascii", errors="surrogateescape"))
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def patient_pseudonym(patient_id: str, key: DeidKey | bytes) -> str:
    """``"ANON-" + 10 hex digits`` of HMAC(key, PatientID)."""
    digest = _as_key(key).digest(b"patient-pseudonym\x00" + str(patient_id).encode("utf-8"))
    return "ANON-" + digest[:5].hex()


def date_shift_days(patient_id: str, key: DeidKey | bytes, max_days: int = 365) -> int:
    """Per-patient date offset in ``-max_days .. -1`` derived from HMAC(key, PatientID)."""
    if max_days < 1:
        raise ValueError("max_days must be >= 1")
    digest = _as_key(key).digest(b"date-shift\x00" + str(patient_id).encode("utf-8"))
    return -(int.from_bytes(digest[:8], "big") % max_days + 1)


_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{0,6}(?:\.\d{1,6})?)([+-]\d{4})?$")


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``, also legacy ``YYYY.MM.DD``); ``None`` if impossible."""
    m = _DA_RE.match(str(value).strip())
    if not m:
        return None
    try:
        day = _dt.date(int(m[1]), int(m[2]), int(m[3])) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value (needs at least ``YYYYMMDD``); time and offset kept."""
    m = _DT_RE.match(str(value).strip())
    if not m:
        return None
    day = shift_date(m[1] + m[2] + m[3], days)
    if day is None:
        return None
    return day + (m[4] or "") + (m[5] or "")


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
        object.__setattr__(self, "key", _as_key(self.key))
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


# --------------------------------------------------------------------- profile tables


@dataclass(frozen=True)
class _Table:
    single: dict
    masked: tuple


@lru_cache(maxsize=4)
def _load_table(name: str) -> _Table:
    try:
        from dicomanonymizer import simpledicomanonymizer as sda
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise DeidentificationError("dicom-anonymizer is required for header de-identification") from exc
    codes = {
        sda.replace: "D",
        sda.empty: "Z",
        sda.delete: "X",
        sda.replace_UID: "U",
        sda.empty_or_replace: "Z/D",
        sda.delete_or_empty: "X/Z",
        sda.delete_or_replace: "X/D",
        sda.delete_or_empty_or_replace: "X/Z/D",
        sda.delete_or_empty_or_replace_UID: "X/Z/U*",
        sda.keep: "K",
    }
    actions = sda.initialize_actions(name)
    single, masked = {}, []
    for tag, fn in actions.items():
        code = codes.get(fn)
        if code is None:
            raise DeidentificationError(f"unknown dicom-anonymizer action {fn!r} for {tag}")
        if len(tag) == 2:
            single[int(Tag(tag))] = code
        else:
            masked.append((tag[0], tag[1], tag[2], tag[3], code))
    return _Table(single=single, masked=tuple(masked))


def _lib():
    from dicomanonymizer import simpledicomanonymizer as sda

    return sda


# ---------------------------------------------------------------------- special tags

_PIXEL_DATA = 0x7FE00010
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_BIRTH_DATE = 0x00100030
_BIRTH_TIME = 0x00100032
_ALWAYS_REMOVE = {
    0x00880200,  # Icon Image Sequence (any depth)
    0x00287FE0,  # Pixel Data Provider URL
    0x00420011,  # Encapsulated Document
    0x00700001,  # Graphic Annotation Sequence
    0x00700008,  # Text Object Sequence
    0x00700009,  # Graphic Object Sequence
    0xFFFAFFFA,  # Digital Signatures Sequence
    0x4FFE0001,  # MAC Parameters Sequence
    0xFFFCFFFC,  # Data Set Trailing Padding
    0x04000561,  # Original Attributes Sequence
}
_PATIENT_CHARACTERISTICS = {
    0x00101010,  # Patient's Age
    0x00100040,  # Patient's Sex
    0x00101020,  # Patient's Size
    0x00101030,  # Patient's Weight
    0x00102203,  # Patient's Sex Neutered
    0x001021C0,  # Pregnancy Status
    0x001021A0,  # Smoking Status
}
_DICOM_UID_ROOT = "1.2.840.10008."
_KEEP_UID_SUFFIXES = ("ClassUID", "SchemeUID", "SyntaxUID", "CreatorUID", "ImplementationClassUID")
_X_CODES = ("X", "X/Z", "X/D", "X/Z/D")
_KEEP_UR = ("CodingSchemeURL", "URNCodeValue")

_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113103": "Clean Graphics Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
}


def _drop_always(tag: BaseTag, top: bool) -> bool:
    group = tag.group
    if tag.is_private or tag.element == 0x0000:
        return True
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF or group == 0x5400:
        return True
    if 0x7F00 <= group <= 0x7FFF:
        return not (top and int(tag) == _PIXEL_DATA)
    return int(tag) in _ALWAYS_REMOVE


class _Cleaner:
    def __init__(self, config: DeidConfig, pseudonym: str, offset: int | None) -> None:
        self.config = config
        self.key: DeidKey = config.key  # type: ignore[assignment]
        self.table = _load_table(config.profile_table)
        self.pseudonym = pseudonym
        self.offset = offset
        self.removed = self.replaced = self.remapped = 0

    # -- table lookup
    def code(self, tag: BaseTag) -> str | None:
        code = self.table.single.get(int(tag))
        if code is not None:
            return code
        for group, element, gmask, emask, mcode in self.table.masked:
            if tag.group & gmask == group & gmask and tag.element & emask == element & emask:
                return mcode
        return None

    def remap(self, value):
        if isinstance(value, (list, MultiValue)):
            return [self.remap(v) for v in value]
        if value is None or str(value).strip() == "":
            return value
        self.remapped += 1
        return remap_uid(str(value), self.key)

    def _delete(self, ds: Dataset, tag: BaseTag) -> None:
        del ds[tag]
        self.removed += 1

    def _lib_action(self, ds: Dataset, tag: BaseTag, name: str) -> None:
        """Call dicom-anonymizer's ``replace`` (D) or ``empty`` (Z) on one element."""
        try:
            getattr(_lib(), name)(ds, (tag.group, tag.element))
            self.replaced += 1
        except Exception:  # VR the library cannot fill: remove instead
            self._delete(ds, tag)

    # -- walking
    def clean(self, ds: Dataset, top: bool) -> None:
        for tag in list(ds.keys()):
            tag = Tag(tag)
            if _drop_always(tag, top):
                self._delete(ds, tag)
                continue
            try:
                elem = ds[tag]
            except Exception:  # undecodable value: drop it
                self._delete(ds, tag)
                continue
            if elem.VR == "UN":
                self._delete(ds, tag)
                continue
            self.handle(ds, elem, self.code(tag), top)

    def handle(self, ds: Dataset, elem, code: str | None, top: bool) -> None:
        tag, vr = elem.tag, elem.VR
        itag = int(tag)
        if itag in (_PATIENT_NAME, _PATIENT_ID):
            elem.value = self.pseudonym
            self.replaced += 1
            return
        if itag == _BIRTH_DATE:
            elem.value = ""
            self.replaced += 1
            return
        if itag == _BIRTH_TIME:
            self._delete(ds, tag)
            return
        if self.config.retain_patient_characteristics and itag in _PATIENT_CHARACTERISTICS:
            return
        if vr == "SQ":
            self.sequence(ds, elem, code)
        elif vr in ("DA", "DT", "TM"):
            self.temporal(ds, elem, code)
        elif vr == "UI":
            self.uid(ds, elem, code)
        elif code is None and vr == "PN":  # a person name the table does not list
            elem.value = ""
            self.replaced += 1
        elif code is None and vr == "UR" and elem.keyword not in _KEEP_UR:  # URLs may embed UIDs
            self._delete(ds, tag)
        elif code is None or code == "K":
            return
        elif code in _X_CODES:
            self._delete(ds, tag)
        elif code in ("Z", "Z/D"):
            self._lib_action(ds, tag, "empty")
        else:  # D, U on a non-UID
            self._lib_action(ds, tag, "replace")

    def sequence(self, ds: Dataset, elem, code: str | None) -> None:
        if code in _X_CODES:
            self._delete(ds, elem.tag)
        elif code in ("Z", "Z/D"):
            elem.value = Sequence([])
            self.replaced += 1
        else:  # not listed, K, D, U, X/Z/U*: clean the items with the same table
            for item in elem.value:
                self.clean(item, top=False)

    def temporal(self, ds: Dataset, elem, code: str | None) -> None:
        if code == "K":
            return
        if self.config.dates == "shift":
            if elem.VR == "TM":
                return  # whole-day offsets: the time of day is kept
            value = elem.value
            if value in (None, "") or (isinstance(value, MultiValue) and len(value) == 0):
                return
            values = list(value) if isinstance(value, MultiValue) else [value]
            fn = shift_date if elem.VR == "DA" else shift_datetime
            shifted = [fn(str(v), self.offset or 0) for v in values]
            if any(s is None for s in shifted):
                self._delete(ds, elem.tag)  # partial or malformed: cannot be shifted
                return
            elem.value = shifted if len(shifted) > 1 else shifted[0]
            self.replaced += 1
            return
        # dates="remove"
        if code in ("D", "Z/D", "U"):
            self._lib_action(ds, elem.tag, "replace")  # dummy value (e.g. 00010101)
        elif code == "Z":
            elem.value = ""
            self.replaced += 1
        else:  # X*, or not listed: remove
            self._delete(ds, elem.tag)

    def uid(self, ds: Dataset, elem, code: str | None) -> None:
        if code == "K":
            return
        if code in ("U", "D", "Z/D", "X/Z/U*"):
            elem.value = self.remap(elem.value)
        elif code in _X_CODES:
            self._delete(ds, elem.tag)
        elif code == "Z":
            elem.value = ""
            self.replaced += 1
        else:  # not listed: remap instance-like UIDs, keep DICOM-defined and class/scheme UIDs
            keyword = elem.keyword or ""
            values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
            defined = all(str(v).startswith(_DICOM_UID_ROOT) or not str(v).strip() for v in values)
            if not defined and not keyword.endswith(_KEEP_UID_SUFFIXES):
                elem.value = self.remap(elem.value)


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
        if elem.VR not in _FREE_TEXT_VRS or (top and int(elem.tag) in (_PATIENT_NAME, _PATIENT_ID)):
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


def _copy_dataset(ds: Dataset, keep_pixel_data: bool) -> Dataset:
    out = Dataset()
    for tag in ds.keys():
        if not keep_pixel_data and int(tag) == _PIXEL_DATA:
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

    out = _copy_dataset(ds, keep_pixel_data)
    cleaner = _Cleaner(config, pseudonym, offset)
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

