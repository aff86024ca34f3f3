"""The manifest that makes a batch resumable: ``OUT/.prichexy/manifest.jsonl``.

One JSON object per line, appended by a single writer and fsync'ed *after* the output file
has been moved into place, so whenever the process is killed:

* a line in the manifest always describes a complete output file;
* an output without a line (killed between the rename and the append) is simply redone by
  the next run -- the result is byte-identical, and the atomic replace never exposes a partial
  file;
* a line cut short by the kill is dropped when the manifest is reopened.

Each line: ``id`` (keyed pseudonym of the input's relative path, also the output's stem),
``digest`` (keyed HMAC of the input's SHA-256), ``status`` (``ok`` / ``failed`` /
``skipped``), ``output`` (path relative to OUT), ``kind``, ``reason``, ``notes``, ``lossy``,
``output_sha256``. No input path, name or header value is stored: the manifest can be
published with the data. The latest line of an id wins.

``run.json`` beside it records the settings of the run (key fingerprint, keyed id of the input
folder, mu, weights SHA-256, dates option, ...); resuming with other settings is refused,
since it would mix two different anonymizations in one release. ``summary.json`` holds the
counts of the last run (and the key fingerprint). An advisory lock on the state folder itself
(``flock``; no lock file) keeps two runs off the same OUT.

The state folder ``OUT/.prichexy/`` is what makes a run resumable and is kept; it holds no
PHI (keyed ids and digests, counts, settings, reasons scrubbed of input names) and can be
published with the outputs. Everything else in OUT is an output file.

:func:`check_output_folder` decides whether OUT may be used at all: it must not exist, be
empty, or be a previous run (``.prichexy/run.json``); the same job is then checked on open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, fsync_dir

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "Manifest",
    "ManifestError",
    "ManifestEntry",
    "STATE_DIR",
    "SETTINGS_COMPARED",
    "check_output_folder",
    "read_manifest",
]

STATE_DIR = ".prichexy"
MANIFEST_NAME = "manifest.jsonl"
SETTINGS_NAME = "run.json"
LEGACY_LOCK_NAME = "lock"  # lock file of earlier versions, removed on open
FORMAT = "monai_prichexy-manifest/1"
#: settings that must be equal to resume a run
SETTINGS_COMPARED = ("key_fingerprint", "mu", "smoothing", "working_size", "weights_sha256", "dates", "precision")
#: the value of a compared setting that runs of earlier versions did not record
SETTINGS_DEFAULTS = {"precision": "fp32"}
#: settings compared when the earlier run recorded them too (older versions did not)
SETTINGS_COMPARED_IF_RECORDED = ("input_id",)


class ManifestError(RuntimeError):
    """The output folder cannot be (re)used: locked, or started with other settings."""


def check_output_folder(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Whether OUT may be written: it does not exist, is empty, or is a previous run.

    Returns the settings recorded by the previous run (``.prichexy/run.json``), or None for a
    new or empty OUT (a state folder without ``run.json``, left by a run killed at its very
    start, counts as empty). Whether the previous run is the same job (key, input, weights,
    ...) is checked by :meth:`Manifest.open`.

    Raises:
        ManifestError: OUT holds files that are not a previous run of this tool; the message
            names OUT and what is in the way. Nothing is written.
    """
    out = Path(out_dir)
    if not out.is_dir():
        return None
    settings_path = out / STATE_DIR / SETTINGS_NAME
    if settings_path.is_file():
        try:
            return dict(json.loads(settings_path.read_text(encoding="utf-8")).get("settings", {}))
        except (OSError, ValueError, AttributeError) as err:
            raise ManifestError(f"{settings_path}: unreadable ({err}); use a new output folder") from None
    in_the_way = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in os.scandir(out) if entry.name != STATE_DIR)
    if not in_the_way:
        return None
    shown = ", ".join(in_the_way[:5]) + (f" and {len(in_the_way) - 5} more" if len(in_the_way) > 5 else "")
    raise ManifestError(
        f"output folder {out} is not empty and is not an earlier run of monai-prichexy anonymize (no "
        f"{STATE_DIR}/{SETTINGS_NAME}); in the way: {shown}. Use a new or empty output folder"
    )


@dataclass(frozen=True)
class ManifestEntry:
    status: str
    digest: str | None
    output: str | None


def read_manifest(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The records of a manifest file, skipping a line cut short by a crash."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # torn last line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                yield record


class Manifest:
    """The state folder of an output tree. Use as a context manager (holds the lock)."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / STATE_DIR
        self.path = self.dir / MANIFEST_NAME
        self.settings_path = self.dir / SETTINGS_NAME
        self._fd: int | None = None
        self._lock_fd: int | None = None

    # ---------------------------------------------------------------- lifecycle
    def open(self, settings: Mapping[str, Any]) -> bool:
        """Lock, check or record ``settings``, repair a torn tail. Returns True when resuming."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        resuming = self.settings_path.exists()
        if resuming:
            self._check_settings(settings)
        else:
            payload = {"format": FORMAT, "settings": dict(settings)}
            atomic_write_bytes(self.settings_path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
        self._repair_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fsync_dir(self.dir)
        return resuming

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _lock(self) -> None:
        """Lock the state folder itself (no lock file is left in OUT)."""
        self._lock_fd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        if fcntl is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ManifestError(f"{self.out_dir}: another monai-prichexy run is writing to this folder") from None
        try:
            (self.dir / LEGACY_LOCK_NAME).unlink()
        except FileNotFoundError:
            pass

    def _check_settings(self, settings: Mapping[str, Any]) -> None:
        try:
            saved = json.loads(self.settings_path.read_text(encoding="utf-8")).get("settings", {})
        except (OSError, ValueError) as err:
            raise ManifestError(f"{self.settings_path}: unreadable ({err}); use a new output folder") from None
        diffs = [
            f"{name}: {saved.get(name, SETTINGS_DEFAULTS.get(name))!r} before, {settings.get(name, SETTINGS_DEFAULTS.get(name))!r} now"
            for name in SETTINGS_COMPARED
            if saved.get(name, SETTINGS_DEFAULTS.get(name)) != settings.get(name, SETTINGS_DEFAULTS.get(name))
        ]
        diffs += [
            f"{name}: another input folder than before"
            for name in SETTINGS_COMPARED_IF_RECORDED
            if name in saved and name in settings and saved[name] != settings[name]
        ]
        if diffs:
            hints = []
            if any(d.startswith("key_fingerprint") for d in diffs):
                hints.append("pass the same --key-file")
            if any(d.startswith("input_id") for d in diffs):
                hints.append("pass the same IN")
            hint = f" ({'; '.join(hints)})" if hints else ""
            raise ManifestError(
                f"{self.out_dir} was started with other settings{hint}: " + "; ".join(diffs)
                + ". Resuming would mix two anonymizations; use a new output folder."
            )

    def _repair_tail(self) -> None:
        """Drop a last line without newline (a kill in the middle of an append)."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as handle:
            handle.seek(max(0, size - 65536))
            tail = handle.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            keep = (size - len(tail)) + cut + 1 if cut >= 0 else 0
            if cut < 0 and size > len(tail):  # a single >64 KiB torn line: scan the whole file
                handle.seek(0)
                keep = handle.read().rfind(b"\n") + 1
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())

    # ---------------------------------------------------------------- content
    def index(self) -> dict[str, ManifestEntry]:
        """id -> latest entry (a few dozen bytes per file)."""
        entries: dict[str, ManifestEntry] = {}
        for record in read_manifest(self.path):
            entries[record["id"]] = ManifestEntry(record.get("status", ""), record.get("digest"), record.get("output"))
        return entries

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and fsync (call only after the output is in place)."""
        if self._fd is None:
            raise RuntimeError("manifest is not open")
        data = (json.dumps(dict(record), sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def settings(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.settings_path.read_text(encoding="utf-8")).get("settings", {}))
        except (OSError, ValueError):
            return {}
