"""Settings of the MONAI Label app, read from the environment only.

MONAI Label writes its ``--studies`` path and every ``--conf key value`` pair into its log at
start-up (``USING:: conf = ...``, ``Initializing App from: ...; conf: ...``), and the log is
served by ``GET /logs``. The folder of originals is often named after the patient
(``/archive/Doe_John_1961``), so this app takes none of its settings from ``--conf``: the
launcher (``python -m monai_prichexy.label start``) puts them in these variables, which
MONAI Label neither logs nor serves.

==============================  ================================================================
variable                        meaning
==============================  ================================================================
``PRICHEXY_LABEL_INPUT``        folder of original radiographs (DICOM, PNG, ...); anonymized
                                into the studies folder (the cache) before the server starts.
                                Unset: the studies folder is served as it is (it must already
                                be anonymized) and only the ``anonymize`` infer task is added
``PRICHEXY_DEID_KEY_FILE``      the CLI's key file (``monai-prichexy keygen``); required with
                                an input
``PRICHEXY_LABEL_ANONYMIZER``   the ``monai-prichexy`` command of the *main* environment
                                (numpy 2, pydicom 3), e.g. ``/opt/prichexy/.venv/bin/monai-prichexy``
                                or ``/opt/prichexy/.venv/bin/python -m monai_prichexy.cli``;
                                required with an input
``PRICHEXY_LABEL_WEIGHTS``      generator checkpoint (default: the CLI's, ``bundle/models/model.pt``)
``PRICHEXY_LABEL_WEIGHTS_SHA256`` expected SHA-256 (default: the bundle's ``metadata.json``)
``PRICHEXY_LABEL_WORKERS``      ``--workers`` of the anonymization (default 1)
``PRICHEXY_DEVICE``             torch device of the ``anonymize`` infer task (default ``cpu``)
==============================  ================================================================
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LabelSettings", "ENV"]

ENV = {
    "input": "PRICHEXY_LABEL_INPUT",
    "key_file": "PRICHEXY_DEID_KEY_FILE",
    "anonymizer": "PRICHEXY_LABEL_ANONYMIZER",
    "weights": "PRICHEXY_LABEL_WEIGHTS",
    "weights_sha256": "PRICHEXY_LABEL_WEIGHTS_SHA256",
    "workers": "PRICHEXY_LABEL_WORKERS",
    "device": "PRICHEXY_DEVICE",
}


@dataclass(frozen=True)
class LabelSettings:
    """What the app needs besides MONAI Label's own ``--app`` / ``--studies``."""

    input: Path | None = None
    key_file: Path | None = None
    anonymizer: tuple[str, ...] = ()
    weights: Path | None = None
    weights_sha256: str | None = None
    workers: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"{ENV['workers']} must be >= 1, got {self.workers}")
        if self.input is not None:
            missing = [ENV[name] for name in ("key_file", "anonymizer") if not getattr(self, name)]
            if missing:
                raise ValueError(f"{ENV['input']} is set, so {' and '.join(missing)} must be set too")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LabelSettings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV[name], "").strip()
            return value or None

        workers = get("workers")
        try:
            workers_n = int(workers) if workers else 1
        except ValueError:
            raise ValueError(f"{ENV['workers']} must be an integer, got {workers!r}") from None
        return cls(
            input=Path(get("input")) if get("input") else None,
            key_file=Path(get("key_file")) if get("key_file") else None,
            anonymizer=tuple(shlex.split(get("anonymizer") or "")),
            weights=Path(get("weights")) if get("weights") else None,
            weights_sha256=get("weights_sha256"),
            workers=workers_n,
            device=get("device") or "cpu",
        )

    def to_environ(self) -> dict[str, str]:
        """The variables that give these settings (for the launcher)."""
        values = {
            "input": self.input,
            "key_file": self.key_file,
            "anonymizer": shlex.join(self.anonymizer) if self.anonymizer else None,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "workers": self.workers,
            "device": self.device,
        }
        return {ENV[k]: os.fspath(v) if isinstance(v, Path) else str(v) for k, v in values.items() if v is not None}
