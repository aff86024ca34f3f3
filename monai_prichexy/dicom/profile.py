"""The PS3.15 Annex E profile engine: which action each attribute gets, and applying it.

The per-attribute actions (D, Z, X, U, K and the conditional Z/D, X/Z, X/D, X/Z/D, X/Z/U*)
come from the tables that **dicom-anonymizer** ships (``dicomanonymizer.simpledicomanonymizer.
initialize_actions``, Table E.1-1 of the standard, newest edition in the package).
:class:`ProfileCleaner` applies them to a dataset with its own engine, because the pipeline
needs things the library's ``anonymize_dataset`` does not do: keyed, reproducible UID
remapping (:func:`~monai_prichexy.dicom.keys.remap_uid`), the actions applied inside *every*
nested sequence item, date shifting (:func:`shift_date`, :func:`shift_datetime`), and
pseudonyms. For the values themselves (dummy ``D`` values, ``Z`` emptying by VR) the library's
own ``replace`` / ``empty`` functions are called. What the actions resolve to, and what is
removed on top of the profile, is described in :mod:`monai_prichexy.dicom.deidentify`.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from .errors import DeidentificationError
from .keys import DeidKey, remap_uid

if TYPE_CHECKING:
    from .deidentify import DeidConfig

__all__ = ["PROFILE_TABLE", "ProfileCleaner", "load_table", "shift_date", "shift_datetime"]

#: dicom-anonymizer table used by default (Table E.1-1 of PS3.15, edition 2026c)
PROFILE_TABLE = "dicomfields_2026c"

# ------------------------------------------------------------------------------ dates

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


# --------------------------------------------------------------------- profile tables


@dataclass(frozen=True)
class _Table:
    single: dict
    masked: tuple


@lru_cache(maxsize=4)
def load_table(name: str) -> _Table:
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

PIXEL_DATA = 0x7FE00010
PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
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


def _drop_always(tag: BaseTag, top: bool) -> bool:
    group = tag.group
    if tag.is_private or tag.element == 0x0000:
        return True
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF or group == 0x5400:
        return True
    if 0x7F00 <= group <= 0x7FFF:
        return not (top and int(tag) == PIXEL_DATA)
    return int(tag) in _ALWAYS_REMOVE


class ProfileCleaner:
    """Applies the profile table (and the removals on top of it) to a dataset and its items, counting what it did."""

    def __init__(self, config: DeidConfig, pseudonym: str, offset: int | None) -> None:
        self.config = config
        self.key: DeidKey = config.key  # type: ignore[assignment]
        self.table = load_table(config.profile_table)
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
        if itag in (PATIENT_NAME, PATIENT_ID):
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
