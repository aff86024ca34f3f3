"""The anonymized cache that the MONAI Label server reads: ``monai-prichexy anonymize``, run once.

:func:`sync_cache` runs the CLI of the **main** environment (numpy 2, pydicom 3) as a
subprocess -- ``ANONYMIZER anonymize INPUT CACHE --key-file KEY ...`` -- so the cache holds
exactly what ``monai-prichexy anonymize`` writes: the same pixels, header, keyed UIDs and keyed
file and folder names, byte for byte. The CLI's manifest (``CACHE/.prichexy/``) makes a second
start resume: files already anonymized with the same key, weights and settings are skipped,
new or changed originals are processed, and a start with another key or other weights is
refused (the CLI refuses to mix two anonymizations in one folder).

Nothing the subprocess prints reaches the server's log as it is: its listing of failed or
skipped files names the originals, so only counts (from ``CACHE/.prichexy/summary.json``) are
logged, and a set-up error is reported with the input folder replaced by ``<input>``.

MONAI Label's local datastore lists only the top level of its folder, while the CLI mirrors
the input's sub-folders under keyed folder names; :func:`link_flat` therefore adds a relative
symbolic link ``CACHE/<file pseudonym>.<ext>`` for every anonymized file in a sub-folder. The
image id the server shows is that file pseudonym (20 hex digits), the stem of the CLI's output
and its id in the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import __version__
from .settings import ENV, LabelSettings

__all__ = ["CacheError", "SyncResult", "sync_cache", "link_flat", "anonymize_command", "scrub"]

logger = logging.getLogger(__name__)

STATE_DIR = ".prichexy"  # the CLI's state folder in OUT (pipeline.manifest.STATE_DIR)
_LISTING_HEADERS = ("FAILED (", "SKIPPED (")


class CacheError(RuntimeError):
    """The cache could not be brought up to date (the message names no original)."""


@dataclass
class SyncResult:
    exit_code: int
    seconds: float
    counts: dict = field(default_factory=dict)
    links: int = 0

    def describe(self) -> str:
        c = self.counts
        return (
            f"anonymized cache up to date in {self.seconds:.1f} s: {c.get('ok', 0)} written, "
            f"{c.get('already_done', 0)} already done, {c.get('failed', 0)} failed, {c.get('skipped', 0)} skipped"
        )


def anonymize_command(settings: LabelSettings, cache: Path) -> list[str]:
    """The ``monai-prichexy anonymize`` command line that fills ``cache``."""
    cmd = [*settings.anonymizer, "anonymize", os.fspath(settings.input), os.fspath(cache)]
    cmd += ["--key-file", os.fspath(settings.key_file), "--workers", str(settings.workers), "--quiet", "--no-progress"]
    if settings.weights is not None:
        cmd += ["--weights", os.fspath(settings.weights)]
    if settings.weights_sha256:
        cmd += ["--weights-sha256", settings.weights_sha256]
    return cmd


def scrub(text: str, input_dir: Path | None) -> str:
    """``text`` without the CLI's listing of failed/skipped files and with the input folder hidden."""
    kept, listing = [], False
    for line in text.splitlines():
        if line.startswith(_LISTING_HEADERS):
            listing = True
            kept.append(line.split(":")[0] + ": (names of originals not shown here)")
            continue
        if listing and line.startswith("  "):
            continue
        listing = False
        kept.append(line)
    text = "\n".join(kept)
    if input_dir is not None:
        needles = {os.fspath(input_dir), os.path.abspath(input_dir)}
        try:
            needles.add(os.fspath(input_dir.resolve()))
        except OSError:
            pass
        for needle in sorted(needles, key=len, reverse=True):
            if needle and needle not in ("/", "."):
                text = text.replace(needle, "<input>")
    return text


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONSTARTUP")}
    env.pop(ENV["input"], None)  # the CLI gets the input as an argument; nothing else needs it
    return env


def check_anonymizer(settings: LabelSettings) -> str:
    """Run ``ANONYMIZER --version``; it must be this very version of monai_prichexy."""
    try:
        proc = subprocess.run(
            [*settings.anonymizer, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300, env=_subprocess_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CacheError(f"{ENV['anonymizer']} ({' '.join(settings.anonymizer)}) does not run: {err}") from None
    version = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    if proc.returncode != 0 or version[0].strip() != f"monai-prichexy {__version__}":
        raise CacheError(
            f"{ENV['anonymizer']} ({' '.join(settings.anonymizer)}) must be the monai-prichexy {__version__} command of "
            f"the main environment (numpy 2, pydicom 3); `--version` gave {version[0]!r} (exit {proc.returncode})"
        )
    return version[0].strip()


def _read_summary(cache: Path) -> dict:
    try:
        return json.loads((cache / STATE_DIR / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def sync_cache(settings: LabelSettings, cache: str | os.PathLike) -> SyncResult:
    """Anonymize ``settings.input`` into ``cache`` with the main environment's CLI (resumable).

    Raises:
        CacheError: the CLI is missing or of another version, refused its set-up (exit 2:
            other key or weights than the cache was made with, bad paths, ...) or was
            interrupted. The message never contains the input folder or an original's name.
    """
    if settings.input is None:
        raise ValueError(f"no input folder ({ENV['input']})")
    cache = Path(cache)
    check_anonymizer(settings)
    start = time.perf_counter()
    logger.info("anonymizing the input into the cache with monai-prichexy %s (main environment)...", __version__)
    try:
        proc = subprocess.run(
            anonymize_command(settings, cache), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=_subprocess_env(),
        )
    except OSError as err:
        raise CacheError(f"{ENV['anonymizer']} does not run: {err}") from None
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        tail = "\n".join(scrub(proc.stderr + proc.stdout, settings.input).strip().splitlines()[-15:])
        raise CacheError(f"monai-prichexy anonymize failed (exit {proc.returncode}):\n{tail}")
    result = SyncResult(proc.returncode, seconds, _read_summary(cache))
    result.links = link_flat(cache)
    logger.info(result.describe())
    if proc.returncode == 1:
        logger.warning(
            "%d original(s) were not anonymized and are not served; to see which and why, run the same "
            "`monai-prichexy anonymize` on the input with this cache as OUT and the same --key-file (it resumes)",
            result.counts.get("failed", 0),
        )
    return result


def _ok_outputs(cache: Path) -> list[PurePosixPath]:
    from ..pipeline.manifest import read_manifest  # no pydicom: importable in the MONAI Label env

    latest: dict[str, dict] = {}
    for record in read_manifest(cache / STATE_DIR / "manifest.jsonl"):
        latest[record["id"]] = record
    outputs = []
    for record in latest.values():
        output = record.get("output")
        if record.get("status") == "ok" and isinstance(output, str) and output:
            rel = PurePosixPath(output)
            if not rel.is_absolute() and ".." not in rel.parts:
                outputs.append(rel)
    return outputs


def link_flat(cache: str | os.PathLike) -> int:
    """Top-level relative symlinks to the anonymized files in sub-folders of ``cache``; returns how many exist.

    Links to files the manifest no longer lists as written are removed; top-level outputs
    (a flat input) need no link.
    """
    cache = Path(cache)
    wanted = {rel.name: rel for rel in _ok_outputs(cache) if len(rel.parts) > 1 and (cache / rel).is_file()}
    for entry in os.scandir(cache):
        if entry.is_symlink() and entry.name not in wanted:
            os.unlink(entry.path)
    for name, rel in wanted.items():
        link = cache / name
        target = os.fspath(rel)
        if link.is_symlink():
            if os.readlink(link) == target:
                continue
            link.unlink()
        elif link.exists():  # cannot happen with the CLI's names (ids are unique); never overwrite a file
            logger.warning("cache: %s exists and is not a link; not linking the file in the sub-folder", name)
            continue
        tmp = cache / f".{name}.link.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return len(wanted)
