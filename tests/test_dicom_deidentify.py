"""Tests of monai_prichexy.dicom.deidentify (PS3.15 Annex E + extras), also through the writer."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

import monai_prichexy
from monai_prichexy.dicom import (
    BurnedInAnnotationError,
    DeidConfig,
    DeidKey,
    date_shift_days,
    deidentify,
    deidentify_dataset,
    patient_pseudonym,
    read_radiograph,
    remap_uid,
    write_radiograph,
)
from tests.dicom_fixtures import (
    CREATION_DATE,
    ORDER_DATE,
    PATIENT_ID,
    PHI_UIDS,
    PHI_VALUES,
    PRIOR_SOP_UID,
    SOP_UID,
    STUDY_DATE,
    STUDY_UID,
    make_radiograph_dataset,
    phi_needles,
    save,
)

KEY = DeidKey(bytes(range(32)))
OTHER_KEY = DeidKey(bytes(range(1, 33)))
METHOD = "PriCheXy-Net pixel deformation mu=0.01"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def all_elements(ds: Dataset):
    """Every element at any depth (and the file meta)."""
    yield from ds.iterall()
    if getattr(ds, "file_meta", None) is not None:
        yield from ds.file_meta.iterall()


def run_pipeline(tmp_path, *, dates="remove", name="out.dcm", ds=None, key=KEY, method_info=METHOD, **kwargs):
    ds = make_radiograph_dataset(64, 80, 12) if ds is None else ds
    src = save(ds, tmp_path / f"in_{name}")
    before = sha256(src)
    rad = read_radiograph(src)
    result = write_radiograph(rad, rad.stored, tmp_path / "out" / name,
                              deid=DeidConfig(key=key, dates=dates, method_info=method_info, **kwargs))
    assert sha256(src) == before
    return result, pydicom.dcmread(result.path)


# ---------------------------------------------------------------------------- leak scans


@pytest.mark.parametrize("dates", ["remove", "shift"])
def test_no_phi_in_output_bytes(tmp_path, dates):
    result, out = run_pipeline(tmp_path, dates=dates)
    if dates == "shift":  # a shifted date landing on another original date would be no leak
        shift = dt.timedelta(days=result.deid.date_shift_days)
        originals = {STUDY_DATE, CREATION_DATE, ORDER_DATE}
        assert not {(_date(d) + shift).strftime("%Y%m%d") for d in originals} & originals, "pick another KEY"
    data = result.path.read_bytes()
    leaks = [needle for needle in phi_needles() if needle in data]
    assert leaks == []


def test_needles_present_in_input(tmp_path):
    """The leak scan is meaningful: every PHI value and most variants are in the input file."""
    src = save(make_radiograph_dataset(64, 80, 12), tmp_path / "in.dcm").read_bytes()
    needles = phi_needles()
    present = [n for n in needles if n in src]
    assert len(present) > 0.6 * len(needles)
    assert all(value.encode("latin-1") in src for value in PHI_VALUES)


# -------------------------------------------------------------------------------- UIDs


def test_uid_remapping_is_keyed_and_consistent(tmp_path):
    _, a = run_pipeline(tmp_path, name="a.dcm")
    _, b = run_pipeline(tmp_path, name="b.dcm")
    _, c = run_pipeline(tmp_path, name="c.dcm", key=OTHER_KEY)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert a[keyword].value == b[keyword].value
        assert a[keyword].value != c[keyword].value
        assert a[keyword].value.startswith("2.25.") and len(a[keyword].value) <= 64
        assert UID(a[keyword].value).is_valid
    assert a.StudyInstanceUID == remap_uid(STUDY_UID, KEY)
    assert a.SOPInstanceUID == remap_uid(SOP_UID, KEY)
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    ref = a.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == remap_uid(PRIOR_SOP_UID, KEY)
    assert ref.ReferencedSOPClassUID == make_radiograph_dataset(16, 16).SOPClassUID  # DICOM-defined: kept
    assert a.SOPClassUID == a.file_meta.MediaStorageSOPClassUID


def test_unlisted_uid_remapped_and_dicom_uids_kept():
    ds = make_radiograph_dataset(16, 16, 12)
    ds.add_new(0x0040A124, "UI", "1.9.9.9.1")  # UID (listed)
    ds.add_new(0x00081150, "UI", "1.2.840.10008.5.1.4.1.1.1.1")  # Referenced SOP Class UID
    ds.add_new(0x00189018, "UI", "1.9.9.9.2")  # not in the table
    out = deidentify_dataset(ds, DeidConfig(key=KEY))
    assert out[0x0040A124].value == remap_uid("1.9.9.9.1", KEY)
    assert out[0x00081150].value == "1.2.840.10008.5.1.4.1.1.1.1"
    assert out[0x00189018].value == remap_uid("1.9.9.9.2", KEY)


# ---------------------------------------------------------------------- patient identity


def test_pseudonym_links_images_of_one_patient():
    a = make_radiograph_dataset(16, 16, 12)
    b = make_radiograph_dataset(16, 16, 12)
    b.SOPInstanceUID = "1.2.3.99"
    c = make_radiograph_dataset(16, 16, 12)
    c.PatientID = "SOMEONE-ELSE"
    config = DeidConfig(key=KEY)
    ra, rb, rc = (deidentify(x, config) for x in (a, b, c))
    assert ra.pseudonym == rb.pseudonym == patient_pseudonym(PATIENT_ID, KEY)
    assert rc.pseudonym != ra.pseudonym
    assert len(ra.pseudonym) == 15 and ra.pseudonym.startswith("ANON-")
    int(ra.pseudonym[5:], 16)
    out = ra.dataset
    assert str(out.PatientName) == ra.pseudonym and out.PatientID == ra.pseudonym
    assert out.PatientBirthDate == "" and "PatientBirthTime" not in out
    assert "OtherPatientIDs" not in out and "OtherPatientIDsSequence" not in out
    assert "PatientAge" not in out and out.PatientSex == ""
    assert deidentify(a, DeidConfig(key=OTHER_KEY)).pseudonym != ra.pseudonym


def test_retain_patient_characteristics():
    ds = make_radiograph_dataset(16, 16, 12)
    result = deidentify(ds, DeidConfig(key=KEY, retain_patient_characteristics=True))
    out = result.dataset
    assert out.PatientAge == "062Y" and out.PatientSex == "M" and float(out.PatientWeight) == 91.5
    assert "113108" in result.method_codes
    assert "113108" in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]


# -------------------------------------------------------------------------------- dates


def _date(value: str) -> dt.date:
    return dt.datetime.strptime(value[:8], "%Y%m%d").date()


def test_shifted_dates_keep_intervals(tmp_path):
    result, out = run_pipeline(tmp_path, dates="shift")
    days = result.deid.date_shift_days
    assert -365 <= days <= -1
    assert days == date_shift_days(PATIENT_ID, KEY)
    assert _date(out.StudyDate) == _date(STUDY_DATE) + dt.timedelta(days=days)
    assert (_date(out.InstanceCreationDate) - _date(out.StudyDate)).days == 2
    nested = out.ReferencedImageSequence[0].ContentDate
    assert (_date(out.StudyDate) - _date(nested)).days == (_date(STUDY_DATE) - _date(ORDER_DATE)).days
    assert out.AcquisitionDateTime == out.StudyDate + "101602.250000"  # time of day kept
    assert out.ContributingEquipmentSequence[0].ContributionDateTime.startswith(out.StudyDate)
    assert out.StudyTime == "101530"
    assert out.PatientBirthDate == ""
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert "113107" in codes
    # another image of the same patient gets the same offset
    other = make_radiograph_dataset(16, 16, 12)
    other.StudyDate = "20240101"
    assert deidentify(other, DeidConfig(key=KEY, dates="shift")).dataset.StudyDate == (
        _date("20240101") + dt.timedelta(days=days)).strftime("%Y%m%d")


def test_removed_dates(tmp_path):
    result, out = run_pipeline(tmp_path, dates="remove")
    assert result.deid.date_shift_days is None
    for elem in all_elements(out):
        if elem.VR in ("DA", "DT"):
            assert elem.value in ("", None) or str(elem.value).startswith("0001"), elem
    assert out.StudyDate == ""
    assert "InstanceCreationDate" not in out and "AcquisitionDateTime" not in out
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert "113107" not in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]


# ----------------------------------------------------------------- required attributes


def test_required_attributes(tmp_path):
    result, out = run_pipeline(tmp_path)
    assert out.PatientIdentityRemoved == "YES"
    method = list(out.DeidentificationMethod)
    joined = " ".join(method)
    assert "monai_prichexy" in joined and monai_prichexy.__version__ in joined and METHOD in joined
    assert all(len(v) <= 64 for v in method)
    items = out.DeidentificationMethodCodeSequence
    assert items[0].CodeValue == "113100" and items[0].CodingSchemeDesignator == "DCM"
    assert items[0].CodeMeaning == "Basic Application Confidentiality Profile"
    assert {item.CodingSchemeDesignator for item in items} == {"DCM"}
    # image pixel module and display attributes needed downstream are kept
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "PhotometricInterpretation", "SamplesPerPixel", "WindowCenter", "WindowWidth",
                    "SOPClassUID", "Modality", "BodyPartExamined", "ViewPosition"):
        assert keyword in out, keyword


def test_long_method_info_is_split():
    info = "x" * 50 + " " + "y" * 100
    out = deidentify_dataset(make_radiograph_dataset(16, 16), DeidConfig(key=KEY, method_info=info))
    assert all(len(v) <= 64 for v in out.DeidentificationMethod)
    pieces = [v for v in out.DeidentificationMethod if set(v) <= set("xy ")]
    assert "".join(pieces).count("y") == 100 and "".join(pieces).count("x") == 50


def test_deidentification_method_is_several_complete_values(tmp_path):
    """(0012,0063) as written to the file: VM > 1, one complete value per fact, each <= 64 characters."""
    info = ("PriCheXy-Net pixel deformation", "mu=0.01 smoothing=grid", "weights sha256 0123456789abcdef")
    result, out = run_pipeline(tmp_path, dates="shift", method_info=info, retain_patient_characteristics=True,
                               allow_burned_in=True, ds=make_radiograph_dataset(32, 40, 12, burned_in="YES"))
    elem = pydicom.dcmread(result.path)["DeidentificationMethod"]
    assert elem.VR == "LO" and elem.VM == 9
    assert list(elem.value) == [
        f"monai_prichexy {monai_prichexy.__version__}",
        "PS3.15 Annex E Basic Profile, dicom-anonymizer dicomfields_2026c",
        "dates shifted per patient",
        "private tags, overlays, curves, icons removed",
        "patient characteristics retained",
        "burned-in annotation accepted, not removed",
        *info,
    ]
    raw = result.path.read_bytes()
    assert b"\\".join(v.encode() for v in elem.value) in raw  # stored as written, nothing cut


def test_long_method_text_is_wrapped_at_word_boundaries():
    words = [f"word{i:02d}-{'abcdefgh' * (i % 3 + 1)}" for i in range(20)]
    text = "first item; " + " ".join(words) + "; last item"
    values = list(deidentify_dataset(make_radiograph_dataset(16, 16, phi=False),
                                     DeidConfig(key=KEY, method_info=text)).DeidentificationMethod)
    assert all(len(v) <= 64 for v in values)
    assert values[4] == "first item" and values[-1] == "last item"
    wrapped = values[5:-1]
    assert len(wrapped) > 2 and " ".join(wrapped).split() == words  # every word whole, in order


# ------------------------------------------------------- things that must be removed


def test_private_overlays_icons_waveforms_removed(tmp_path):
    ds = make_radiograph_dataset(64, 80, 12)
    # an icon and a private tag nested deeper, and a stray pixel data in an item
    nested_icon = copy.deepcopy(ds.IconImageSequence)
    ds.ReferencedImageSequence[0].IconImageSequence = nested_icon
    ds.ReferencedImageSequence[0].add_new(0x7FE00010, "OB", b"NESTEDPIXELS")
    ds.ReferencedImageSequence[0].add_new(0x00990010, "LO", "NESTED CREATOR")
    result, out = run_pipeline(tmp_path, ds=ds)
    pixel_data = [e for e in all_elements(out) if e.tag.group == 0x7FE0 or 0x7F00 <= e.tag.group <= 0x7FFF]
    assert [e.tag for e in pixel_data] == [0x7FE00010] and 0x7FE00010 in out
    for elem in all_elements(out):
        assert not elem.tag.is_private, elem
        assert not (0x6000 <= elem.tag.group <= 0x60FF), elem
        assert not (0x5000 <= elem.tag.group <= 0x50FF), elem
        assert elem.tag.group != 0x5400, elem
        assert elem.tag != 0x00880200, elem
        assert elem.VR != "UN", elem
    assert "SourceApplicationEntityTitle" not in out.file_meta
    data = result.path.read_bytes()
    assert b"NESTEDPIXELS" not in data and b"ACME PHI" not in data


def test_other_pixel_data_elements_removed():
    ds = make_radiograph_dataset(16, 16, 12)
    ds.add_new(0x7FE00008, "OF", np.zeros(4, "<f4").tobytes())  # Float Pixel Data
    ds.add_new(0x7FE00001, "OV", bytes(8))  # Extended Offset Table
    ds.add_new(0x7F000010, "OB", b"VARIABLEPIXELS")  # retired Variable Pixel Data
    ds.add_new(0x00287FE0, "UR", "http://pacs.example/pixels/123")  # Pixel Data Provider URL
    ds.add_new(0xFFFCFFFC, "OB", b"TRAILINGPADDING!")  # Data Set Trailing Padding
    out = deidentify_dataset(ds, DeidConfig(key=KEY))
    assert [t for t in out.keys() if t.group >= 0x7F00] == [0x7FE00010]
    assert 0x00287FE0 not in out and 0xFFFCFFFC not in out
    assert 0x7FE00010 not in deidentify_dataset(ds, DeidConfig(key=KEY), keep_pixel_data=False)


def test_contributing_equipment_items_cleaned():
    out = deidentify_dataset(make_radiograph_dataset(16, 16), DeidConfig(key=KEY))
    item = out.ContributingEquipmentSequence[0]
    assert item.Manufacturer == "ACME Imaging"
    for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "OperatorsName",
                    "ContributionDescription"):
        assert keyword not in item, keyword


def test_burned_in_refused_by_default(tmp_path):
    ds = make_radiograph_dataset(16, 16, 12, burned_in="YES")
    with pytest.raises(BurnedInAnnotationError, match="out of scope"):
        deidentify(ds, DeidConfig(key=KEY))
    src = save(ds, tmp_path / "burned.dcm")
    rad = read_radiograph(src)
    with pytest.raises(BurnedInAnnotationError):
        write_radiograph(rad, rad.stored, tmp_path / "out.dcm", deid=DeidConfig(key=KEY))
    assert not (tmp_path / "out.dcm").exists()
    out = deidentify_dataset(ds, DeidConfig(key=KEY, allow_burned_in=True))
    assert out.BurnedInAnnotation == "YES" and out.PatientIdentityRemoved == "YES"


def test_input_dataset_not_modified():
    ds = make_radiograph_dataset(16, 16, 12)
    before = copy.deepcopy(ds)
    deidentify(ds, DeidConfig(key=KEY, dates="shift"))
    assert ds == before
    assert ds.file_meta == before.file_meta


def test_all_phi_uids_gone_from_dataset():
    out = deidentify_dataset(make_radiograph_dataset(16, 16), DeidConfig(key=KEY))
    values = {str(v) for e in all_elements(out) if e.VR == "UI"
              for v in (e.value if isinstance(e.value, (list, pydicom.multival.MultiValue)) else [e.value])}
    assert not values & set(PHI_UIDS)


def test_dates_in_shift_mode_never_equal_originals():
    out = deidentify_dataset(make_radiograph_dataset(16, 16), DeidConfig(key=KEY, dates="shift"))
    values = {str(e.value) for e in all_elements(out) if e.VR in ("DA", "DT")}
    assert not any(v.startswith(d) for v in values for d in (STUDY_DATE, CREATION_DATE, ORDER_DATE))


def test_config_validation():
    with pytest.raises(ValueError):
        DeidConfig(key=KEY, dates="fuzzy")
    assert DeidConfig(key=bytes(range(32))).key == KEY


def test_unlisted_person_names_and_urls():
    ds = make_radiograph_dataset(16, 16, 12)
    ds.add_new(0x00140104, "PN", "Quaddelbrink^Hieronymus")  # Secondary Reviewer Name (not in table)
    ds.add_new(0x00081190, "UR", f"https://pacs.example/studies/{STUDY_UID}")  # Retrieve URL
    out = deidentify_dataset(ds, DeidConfig(key=KEY))
    assert out[0x00140104].value == ""
    assert 0x00081190 not in out
