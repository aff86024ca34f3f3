"""Command-line options shared by every door: ``monai-prichexy``, the MONAI Deploy app, the benchmark.

One definition per option (name, type, default, help) so that the same flag means the same
thing wherever it is given; each command line adds the groups it needs. Only ``argparse`` is
imported here: a command line is parsed, and a typo refused, before torch or MONAI is loaded
(``tests/test_cli_args.py``).

Flag style: ``--words-with-dashes``. The benchmark also accepts its older ``--words_with_underscores``
spellings (hidden aliases), so existing scripts keep working.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = [
    "KEY_SUFFIX",
    "NUMBER_RULES",
    "add_weights_arguments",
    "add_weights_sha256_argument",
    "add_deformation_arguments",
    "add_key_file_argument",
    "add_dates_argument",
    "add_device_argument",
    "add_progress_argument",
    "add_dask_arguments",
    "add_benchmark_arguments",
    "bad_number",
]

#: suffix of the default key file ``<OUT>.prichexy-key`` (beside OUT, never inside it)
KEY_SUFFIX = ".prichexy-key"


def add_weights_arguments(parser: argparse.ArgumentParser, help_weights: str) -> None:
    """``--weights`` and ``--weights-sha256``."""
    parser.add_argument("--weights", help=help_weights)
    add_weights_sha256_argument(parser)


def add_weights_sha256_argument(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--weights-sha256`` (``aliases``: older spellings, e.g. the Deploy app's ``--model-sha256``)."""
    parser.add_argument("--weights-sha256", *aliases, dest="weights_sha256", default=None,
                        help="expected SHA-256 of the weights, 64 hex digits, checked before loading "
                        "(default: the one recorded in the bundle's metadata.json for its own model.pt)")


def add_deformation_arguments(parser: argparse.ArgumentParser, *, mu_only: bool = False) -> None:
    """``--mu`` (and, unless ``mu_only``, ``--smoothing`` and ``--working-size``); default: the checkpoint's."""
    parser.add_argument("--mu", type=float, default=None,
                        help="deformation strength, a fraction of the image side: the largest shift is mu / 2 of the "
                        "side, e.g. 0.01 -> 1.28 px at 256 px (default: the checkpoint's)")
    if mu_only:
        return
    parser.add_argument("--smoothing", choices=("grid", "displacement", "none"), help="default: the checkpoint's, else grid")
    parser.add_argument("--working-size", type=int, default=None,
                        help="side in pixels of the image the generator sees (default: the checkpoint's, else 256)")


def add_key_file_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--key-file``: the de-identification key (keyed pseudonyms, UIDs, date shifts)."""
    parser.add_argument("--key-file", dest="key_file", default=None, help=help_text)


def add_dates_argument(parser: argparse.ArgumentParser, default: str | None = "remove") -> None:
    """``--dates remove|shift`` (DICOM dates: removed, or shifted per patient by the key)."""
    parser.add_argument("--dates", choices=("remove", "shift"), default=default,
                        help="DICOM dates: remove (default) or shift per patient")


def add_device_argument(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``: ``auto`` (cuda when present, else cpu), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    parser.add_argument("--device", default=default, help="torch device: auto (default), cpu, cuda, cuda:1, ...")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_dask_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dask-scheduler ADDRESS`` or ``--dask-local N``: anonymize the files on a Dask cluster
    (optional extra ``dask``; docs/distributed.md)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dask-scheduler", metavar="ADDRESS", default=None,
                       help="anonymize the files on the workers of this running Dask scheduler, e.g. tcp://host:8786 "
                       "(extra `dask`; IN, OUT and the key file at the same paths on every worker; the generator runs on "
                       "the workers' CPUs; see docs/distributed.md)")
    group.add_argument("--dask-local", metavar="N", type=int, default=None,
                       help="start a local Dask cluster of N single-threaded worker processes on this machine and "
                       "anonymize the files there (extra `dask`)")


#: (dest, valid, message): the range of every numeric option (argparse checks only the type)
NUMBER_RULES: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("workers", lambda v: v >= 1, "--workers must be >= 1"),
    ("dask_local", lambda v: v >= 1, "--dask-local must be >= 1"),
    ("jpeg_quality", lambda v: 1 <= v <= 100, "--jpeg-quality must be in 1..100"),
    ("mu", lambda v: 0 <= v <= 1, "--mu must be in [0, 1]"),
    ("working_size", lambda v: v >= 16 and v % 16 == 0, "--working-size must be a positive multiple of 16"),
    ("threshold", lambda v: 0 < v < 1, "--threshold must be in (0, 1)"),
)


def bad_number(args: argparse.Namespace) -> str | None:
    """The first numeric option out of its range, as a message; None when all are fine."""
    for dest, valid, message in NUMBER_RULES:
        value = getattr(args, dest, None)
        if value is not None and not valid(value):
            return f"{message}, got {value}"
    return None


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """The privacy / utility benchmark's options (``monai-prichexy benchmark``, ``scripts/benchmark.py``)."""
    parser.add_argument("--config", default=None,
                        help="profile JSON (default: configs/benchmark_paper.json, the paper's set-up)")
    parser.add_argument("--dataset-dir", "--dataset_dir", dest="dataset_dir",
                        help="data folder (labels.csv, splits.csv, images ...)")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir",
                        help="where checkpoints, results and the tables go")
    parser.add_argument("--force", action="store_true", help="redo stages and evaluations whose outputs exist")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. stages.attack.seeds=[0,1] device=cuda")
    parser.add_argument("--model", nargs="+", default=None, metavar="MODEL_PT",
                        help="evaluate these trained PriCheXy-Net files (e.g. bundle/models/model.pt) with their "
                             "random-deformation controls instead of training the profile's rows")
    parser.add_argument("--render", metavar="BENCHMARK_JSON",
                        help="only render benchmark.md / .png again from a run's benchmark.json (nothing is run)")
    parser.add_argument("--readme", metavar="README_MD",
                        help="with --render: also replace the README section between "
                             "<!-- results:<folder>:start --> and <!-- results:<folder>:end -->")
    parser.add_argument("--log-level", "--log_level", dest="log_level", default="INFO",
                        help="log level of the benchmark's progress messages (default INFO)")
