"""A benchmark profile: the bundle's configs, with a profile's changes on top.

The paper's set-up (Packhäuser et al., MICCAI 2023) is stated once, in the MONAI bundle:
``configs/train.json`` (data, network sizes, each training stage's settings),
``configs/evaluate.json`` (the attack: seeds, epochs, attackers; the bootstrap; the split it is
measured on) and ``configs/benchmark.json``
(the benchmark's own rows: the mu list, DP-Pix, the random-warp control, the budget frontier).
:func:`default_profile` reads their plain values -- MONAI's ``ConfigParser`` resolves references
such as ``"@image_size"``; nothing is instantiated -- into the profile the
:class:`~monai_prichexy.engines.experiment.Experiment` runs. A profile file
(``configs/benchmark_cpu.json``, ...) lists only what it changes (merged by :func:`deep_update`);
``--set key.sub=value`` changes one value more (:func:`load_profile`).

So ``python -m monai.bundle run --config_file bundle/configs/train.json`` and
``monai-prichexy benchmark`` train with the same settings unless told otherwise.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..bundle_files import bundle_root

__all__ = ["DATA_KEYS", "bundle_profile", "default_profile", "deep_update", "load_profile"]

#: keys of ``train.json`` that are the :class:`~monai_prichexy.engines.DataModule`'s arguments
DATA_KEYS = (
    "image_dir", "table", "dataset", "split_file", "train_val_list", "test_list", "image_size", "degrade_to",
    "num_pairs", "max_positive_per_patient", "max_images", "num_workers", "cache_rate",
)
#: ``train.json`` sections holding a stage's settings (besides its ``stage`` / ``anonymizer`` objects)
STAGES = ("classifier_pretrain", "verifier_pretrain", "generator_pretrain", "adversarial", "ensemble")
_OBJECTS = ("stage", "anonymizer")


def _parser(path: Path):
    from monai.bundle import ConfigParser

    if not path.is_file():
        raise FileNotFoundError(f"{path}: the bundle config the benchmark's default profile is read from is missing")
    parser = ConfigParser()
    parser.read_config(str(path))
    return parser


def bundle_profile(configs_dir: str | os.PathLike) -> dict[str, Any]:
    """The profile stated by a bundle's ``train.json``, ``evaluate.json`` and ``benchmark.json``."""
    configs = Path(configs_dir)
    train, evaluate, bench = (_parser(configs / f"{name}.json") for name in ("train", "evaluate", "benchmark"))

    def value(parser, key: str) -> Any:
        return copy.deepcopy(parser.get_parsed_content(key))

    def section(name: str) -> dict[str, Any]:
        return {k: value(train, f"{name}#{k}") for k in train.get(name) if k not in _OBJECTS}

    return {
        "device": value(bench, "device"),
        "seed": value(train, "seed"),
        "output_dir": value(bench, "output_dir"),
        "progress": value(train, "progress"),
        "num_threads": value(train, "num_threads"),
        "data": {"dataset_dir": None, **{k: value(train, k) for k in DATA_KEYS}},
        "networks": {
            "generator": {"init_features": value(train, "generator_def#init_features")},
            "working_size": value(train, "working_size"),
            "smoothing": value(train, "smoothing"),
            "privacy_net": {"init_features": value(train, "privacy_net_def#init_features")},
            "classifier": {k: value(train, f"classifier_def#{k}") for k in ("in_channels", "input_size")},
            "verifier": {k: value(train, f"verifier_def#{k}") for k in ("backbone", "embedding_dim", "widen_factor")},
        },
        "stages": {**{name: section(name) for name in STAGES}, "attack": value(evaluate, "attack")},
        "benchmark": {**value(bench, "benchmark"), "n_bootstrap": value(evaluate, "n_bootstrap"),
                      "eval_split": value(evaluate, "split")},
    }


@functools.lru_cache(maxsize=None)
def _cached_default(configs_dir: str) -> str:
    return json.dumps(bundle_profile(configs_dir))


def default_profile() -> dict[str, Any]:
    """The paper's set-up, from this installation's bundle configs (a fresh copy each call)."""
    return json.loads(_cached_default(str(bundle_root() / "configs")))


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def load_profile(
    profile: str | os.PathLike | Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A profile (path or mapping) merged over :func:`default_profile`, then dotted ``overrides``.

    Example: ``load_profile("configs/benchmark_cpu.json", {"stages.attack.seeds": [0]})``.
    """
    if profile is None:
        loaded: Mapping[str, Any] = {}
    elif isinstance(profile, Mapping):
        loaded = profile
    else:
        loaded = json.loads(Path(profile).read_text(encoding="utf-8"))
    cfg = deep_update(default_profile(), loaded)
    for key, value in (overrides or {}).items():
        _set_dotted(cfg, key, value)
    return cfg
