"""Pair every original with its anonymized copy, through the output's manifest and the key.

The pseudonym of an original's relative path (under the run's key) is its manifest id; the
keyed digest of its bytes must match the one recorded (otherwise the original changed since
the anonymization and is left out). Used by ``monai-prichexy report`` and ``audit``; nothing
here is written anywhere.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manifest import MANIFEST_NAME, SETTINGS_NAME, STATE_DIR, read_manifest
from ..hashing import sha256_stream
from .naming import Pseudonymizer
from .walk import walk_files

__all__ = ["PairingError", "PairedFile", "RunPairs", "check_out_dir"]


class PairingError(RuntimeError):
    """The anonymized folder cannot be paired with the originals (no manifest, wrong key)."""


@dataclass(frozen=True)
class PairedFile:
    """One original and its anonymized copy.

    Attributes:
        original: the original file (its path holds PHI: never write or log it).
        rel: its relative POSIX path under the originals folder (PHI as well).
        anonymized: the copy's path; output: its relative path under the output folder (pseudonyms).
        kind: the format (``"dicom"``, ``"png"``, ...).
    """

    original: Path
    rel: str
    anonymized: Path
    output: str
    kind: str


def check_out_dir(out_dir: Path, *folders: Path) -> None:
    """Refuse a results folder inside (or equal to) one of ``folders``."""
    target = Path(out_dir).resolve()
    for folder in folders:
        base = Path(folder).resolve()
        if target == base or base in target.parents:
            raise PairingError(f"results folder {out_dir} must not be inside {folder}")


class RunPairs:
    """The (original, anonymized) files of a finished ``monai-prichexy anonymize`` run.

    Args:
        originals: the run's input folder.
        anonymized: its output folder.
        key: the run's :class:`~monai_prichexy.dicom.DeidKey` (its fingerprint must match).

    Attributes:
        settings: the run's recorded settings (mu, weights SHA-256, key fingerprint, ...).
        counts: why files were left out, filled while iterating.
    """

    def __init__(self, originals: str | Path, anonymized: str | Path, key: Any) -> None:
        self.originals, self.anonymized = Path(originals), Path(anonymized)
        if not self.originals.is_dir():
            raise PairingError(f"originals folder {self.originals} does not exist")
        manifest_path = self.anonymized / STATE_DIR / MANIFEST_NAME
        if not manifest_path.is_file():
            raise PairingError(f"{self.anonymized}: no {STATE_DIR}/{MANIFEST_NAME}; not an output folder of "
                               "`monai-prichexy anonymize`")
        try:
            text = (self.anonymized / STATE_DIR / SETTINGS_NAME).read_text(encoding="utf-8")
            self.settings: dict[str, Any] = json.loads(text).get("settings", {})
        except (OSError, ValueError):
            self.settings = {}
        if self.settings.get("key_fingerprint") not in (None, key.fingerprint):
            raise PairingError("the key does not match the one used for this output folder (fingerprints differ); "
                               "pass its --key-file")
        self._index: dict[str, tuple[str, str, str]] = {}
        for record in read_manifest(manifest_path):
            if record.get("status") == "ok" and record.get("output"):
                self._index[record["id"]] = (record.get("digest"), record["output"], record.get("kind"))
            else:
                self._index.pop(record["id"], None)
        self._pseudonymizer = Pseudonymizer(key)
        self.counts: dict[str, int] = defaultdict(int)

    def n_files(self) -> int:
        """Number of files under the originals folder (for a progress bar)."""
        return sum(1 for e in walk_files(self.originals) if e.kind == "file")

    def __iter__(self) -> Iterator[PairedFile]:
        for entry in walk_files(self.originals):
            if entry.kind != "file":
                continue
            hit = self._index.get(self._pseudonymizer.file_id(entry.rel))
            if hit is None:
                self.counts["not anonymized (failed, skipped or not processed)"] += 1
                continue
            digest, output, kind = hit
            with open(entry.path, "rb") as handle:
                if self._pseudonymizer.content_digest(sha256_stream(handle)) != digest:
                    self.counts["original changed since anonymization (left out)"] += 1
                    continue
            anon_path = self.anonymized / output
            if not anon_path.is_file():
                self.counts["anonymized file missing (left out)"] += 1
                continue
            yield PairedFile(Path(entry.path), str(entry.rel), anon_path, output, kind)
