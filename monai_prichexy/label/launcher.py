"""``python -m monai_prichexy.label start``: start the MONAI Label server on the anonymized cache.

::

    python -m monai_prichexy.label start --input IN --work WORK --key-file KEY \\
        --anonymizer /path/to/main/.venv/bin/monai-prichexy [--port 8000] [--host 127.0.0.1]

Lays out ``WORK`` and replaces itself (``exec``, same process id) with ``monailabel
start_server``:

* ``WORK/cache/``: the anonymized cache = MONAI Label's studies folder (the output folder of
  ``monai-prichexy anonymize``, plus MONAI Label's ``datastore_v2.json`` and ``labels/``);
* ``WORK/app/``: the MONAI Label app folder (``main.py``; MONAI Label adds ``logs/``, ...).

The settings reach the app through environment variables (:mod:`.settings`), never through
MONAI Label's ``--conf``, which it writes to its log. ``WORK`` must not be inside ``IN``, and
its path is logged by MONAI Label: do not name it after a patient. Arguments after ``--`` go
to ``monailabel start_server`` (e.g. ``-- --workers 1 -v DEBUG``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .settings import LabelSettings

__all__ = ["main", "build_parser", "prepare_work", "server_command", "APP_MAIN"]

APP_MAIN = '''"""MONAI Label app folder written by `python -m monai_prichexy.label start`: MONAI Label loads this file."""

from monai_prichexy.label.app import PriCheXyLabelApp  # noqa: F401
'''


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monai_prichexy.label", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    p = sub.add_parser("start", help="anonymize IN into WORK/cache (resumable) and serve it with MONAI Label")
    p.add_argument("--input", help="folder of original radiographs; omit to serve WORK/cache as it is")
    p.add_argument("--work", required=True, help="server folder: WORK/cache (anonymized) and WORK/app")
    p.add_argument("--key-file", help="the de-identification key (monai-prichexy keygen); required with --input")
    p.add_argument(
        "--anonymizer",
        help="the monai-prichexy command of the main environment, e.g. /opt/prichexy/.venv/bin/monai-prichexy "
        "(a command line; quoted words allowed); required with --input",
    )
    p.add_argument("--weights", help="generator checkpoint (default: the CLI's bundle/models/model.pt)")
    p.add_argument("--weights-sha256", help="expected SHA-256 of the weights (default: the bundle's metadata)")
    p.add_argument("--workers", type=int, default=1, help="threads of the anonymization (default 1)")
    p.add_argument("--device", default="cpu", help="torch device of the 'anonymize' infer task (default cpu)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("server_args", nargs="*", help="after --: more arguments for monailabel start_server")
    p.set_defaults(func=cmd_start)
    return parser


def prepare_work(work: str | os.PathLike) -> tuple[Path, Path]:
    """Create ``WORK/app/main.py`` and ``WORK/cache``; returns (app folder, cache folder)."""
    work = Path(work).resolve()
    app, cache = work / "app", work / "cache"
    app.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    main_py = app / "main.py"
    if not main_py.is_file() or main_py.read_text(encoding="utf-8") != APP_MAIN:
        main_py.write_text(APP_MAIN, encoding="utf-8")
    return app, cache


def server_command(app: Path, cache: Path, host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable, "-m", "monailabel.main", "start_server",
        "--app", os.fspath(app), "--studies", os.fspath(cache), "--host", host, "--port", str(port), *extra,
    ]


def _settings(args) -> LabelSettings:
    try:
        anonymizer = tuple(shlex.split(args.anonymizer)) if args.anonymizer else ()
    except ValueError as err:
        raise SystemExit(f"--anonymizer: {err}") from None
    if anonymizer and os.sep in anonymizer[0] and Path(anonymizer[0]).exists():
        anonymizer = (os.fspath(Path(anonymizer[0]).absolute()), *anonymizer[1:])  # the server may change folder
    try:
        return LabelSettings(
            input=Path(args.input).resolve() if args.input else None,
            key_file=Path(args.key_file).resolve() if args.key_file else None,
            anonymizer=anonymizer,
            weights=Path(args.weights).resolve() if args.weights else None,
            weights_sha256=args.weights_sha256,
            workers=args.workers,
            device=args.device,
        )
    except ValueError as err:
        message = str(err).replace("PRICHEXY_LABEL_INPUT", "--input").replace("PRICHEXY_DEID_KEY_FILE", "--key-file")
        raise SystemExit("error: " + message.replace("PRICHEXY_LABEL_ANONYMIZER", "--anonymizer")) from None


def cmd_start(args) -> int:
    settings = _settings(args)
    if settings.input is not None and not settings.input.is_dir():
        raise SystemExit("error: --input is not a folder")
    app, cache = prepare_work(args.work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRICHEXY_LABEL_")}
    env.update(settings.to_environ())
    command = server_command(app, cache, args.host, args.port, args.server_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
    return 0  # pragma: no cover - execve does not return


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))
