"""``monai-prichexy label-map``: the steward maps annotators' labels back to the original studies.

Annotators only ever see keyed pseudonyms: a label saved on the MONAI Label server is named
after the image id, ``<file pseudonym>.<ext>`` in ``CACHE/labels/<tag>/``. The pseudonym is an
HMAC of the original's path relative to the input folder under the de-identification key
(:meth:`~monai_prichexy.pipeline.naming.Pseudonymizer.file_id`, the same function that named the
cache), so only whoever holds the key *and* the originals can link a label to its study: this
command walks the input as ``anonymize`` does, recomputes every pseudonym, and copies each
label to ``OUT/<tag>/<original relative path>`` with the label's own extension. Nothing is
read from a stored plain-text mapping: there is none in the cache or the release.

``OUT/mapping.csv`` lists, per label: tag, pseudonym, the original's relative path and, for a
DICOM original, its StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID. OUT holds PHI (it
names the originals): keep it where the originals are, never inside the cache or the input.

Runs in the main environment (it reads the originals' headers with pydicom 3).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..pipeline.walk import is_inside

__all__ = ["LabelMapSummary", "map_labels", "add_label_map_parser", "label_stem"]

#: label suffixes that span two dots
_DOUBLE_SUFFIXES = (".nii.gz", ".seg.nrrd", ".json.gz")
_UID_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass
class LabelMapSummary:
    mapped: int = 0
    unmatched: list[str] = field(default_factory=list)  # label files (pseudonymous names) without an original
    csv: Path | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.unmatched else 0


def label_stem(name: str) -> tuple[str, str]:
    """``(stem, suffix)`` of a label file name (``.nii.gz`` and the like count as one suffix)."""
    lower = name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot and stem else (name, "")


def _label_files(labels_dir: Path) -> list[tuple[str, Path]]:
    """``(tag, file)`` for every label: ``labels_dir`` is MONAI Label's ``labels/`` (tags as sub-folders) or one tag folder."""
    found = []
    for path in sorted(labels_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(labels_dir)
        tag = rel.parts[0] if len(rel.parts) > 1 else labels_dir.name
        found.append((tag, path))
    return found


def _cache_fingerprint(labels_dir: Path) -> str | None:
    """The key fingerprint the cache above ``labels_dir`` was anonymized with, if it can be found."""
    for folder in [labels_dir, *labels_dir.resolve().parents][:4]:
        run = folder / ".prichexy" / "run.json"
        if run.is_file():
            try:
                return json.loads(run.read_text(encoding="utf-8")).get("settings", {}).get("key_fingerprint")
            except (OSError, ValueError):
                return None
    return None


def _dicom_uids(path: Path) -> dict[str, str]:
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_UID_TAGS))
        return {tag: str(getattr(ds, tag, "")) for tag in _UID_TAGS}
    except Exception:  # not DICOM, unreadable: the path is the link
        return {tag: "" for tag in _UID_TAGS}


def map_labels(input_dir, labels_dir, out_dir, key) -> LabelMapSummary:
    """Copy every label under ``labels_dir`` to ``out_dir/<tag>/<original relative path>``.

    Args:
        input_dir: the originals (the server's input folder).
        labels_dir: MONAI Label's ``labels/`` folder of the cache (or one tag folder, or a copy).
        out_dir: where the mapped labels and ``mapping.csv`` go (created; not inside
            ``input_dir`` or ``labels_dir``).
        key: the :class:`~monai_prichexy.dicom.DeidKey` the cache was anonymized with.
    """
    from ..pipeline.naming import Pseudonymizer
    from ..pipeline.walk import walk_files

    input_dir, labels_dir, out_dir = Path(input_dir), Path(labels_dir), Path(out_dir)
    if not input_dir.is_dir():
        raise ValueError(f"input folder {input_dir} does not exist")
    if not labels_dir.is_dir():
        raise ValueError(f"labels folder {labels_dir} does not exist")
    for folder, what in ((input_dir, "input"), (labels_dir, "labels")):
        if is_inside(out_dir, folder):
            raise ValueError(f"output folder {out_dir} is inside the {what} folder; choose a separate folder")
    fingerprint = _cache_fingerprint(labels_dir)
    if fingerprint is not None and fingerprint != key.fingerprint:
        raise ValueError(
            f"the labels come from a cache anonymized with another key (fingerprint {fingerprint}, "
            f"this key {key.fingerprint}); pass the --key-file of that anonymization"
        )
    pseudonymizer = Pseudonymizer(key)
    originals: dict[str, PurePosixPath] = {}
    for entry in walk_files(input_dir):
        if entry.kind == "file":
            originals[pseudonymizer.file_id(entry.rel)] = entry.rel
    summary = LabelMapSummary()
    rows = []
    for tag, path in _label_files(labels_dir):
        stem, suffix = label_stem(path.name)
        rel = originals.get(stem)
        if rel is None:
            summary.unmatched.append(f"{tag}/{path.name}")
            continue
        original = input_dir / rel
        target = out_dir / tag / Path(*rel.parts[:-1]) / (label_stem(rel.name)[0] + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        uids = _dicom_uids(original)
        rows.append({"tag": tag, "pseudonym": stem, "original": rel.as_posix(), **uids,
                     "label": target.relative_to(out_dir).as_posix()})
        summary.mapped += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.csv = out_dir / "mapping.csv"
    with open(summary.csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["tag", "pseudonym", "original", *_UID_TAGS, "label"])
        writer.writeheader()
        writer.writerows(rows)
    return summary


def cmd_label_map(args) -> int:
    from ..cli import CliError, _load_key

    key, _, _ = _load_key(args.key_file, Path(args.out), Path(args.input), create=False)
    try:
        summary = map_labels(args.input, args.labels, args.out, key)
    except ValueError as err:
        raise CliError(str(err)) from None
    print(f"mapped {summary.mapped} label(s) to their originals: {summary.csv}", file=sys.stderr)
    if summary.unmatched:
        print(f"NO ORIGINAL under the input for {len(summary.unmatched)} label(s) (other input folder, "
              "or an original moved or renamed since the anonymization):", file=sys.stderr)
        for name in summary.unmatched[:50]:
            print(f"  {name}", file=sys.stderr)
    return summary.exit_code


def add_label_map_parser(sub) -> argparse.ArgumentParser:
    """Add ``label-map`` to the ``monai-prichexy`` sub-commands."""
    p = sub.add_parser(
        "label-map",
        help="map labels saved on the MONAI Label server back to the original files (needs the key)",
        description="Recompute the keyed pseudonym of every original under IN and copy each label of LABELS "
        "(the server cache's labels/ folder) to OUT/<tag>/<original relative path>, with OUT/mapping.csv "
        "(original path and DICOM UIDs per label). Exit status 1 when some labels have no original.",
    )
    p.add_argument("--key-file", required=True, help="the key the server's cache was anonymized with")
    p.add_argument("--input", required=True, metavar="IN", help="the original radiographs (the server's input)")
    p.add_argument("--labels", required=True, metavar="LABELS", help="labels folder, e.g. CACHE/labels")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (holds PHI: keep it with the originals)")
    p.set_defaults(func=cmd_label_map)
    return p
