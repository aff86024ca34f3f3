"""Stage 6: the re-identification attack and the utility measure (the paper's evaluation protocol).

Privacy (Packhäuser et al., MICCAI 2023): a FRESHLY initialised Siamese verifier is trained on
pairs with BOTH images anonymized (same stage as verifier pre-training: BCE, Adam 1e-4,
early stopping on the validation loss) and tested on (anonymized, real) test pairs; ROC AUC,
repeated over several seeds, mean +- std. Reported pair-weighted (the paper's number) and
patient-weighted (every anchor patient counts once; data README caveat 5).

Retrieval attack (Packhäuser et al., Sci. Rep. 2022): the attacker's embeddings of the
anonymized test images (queries) rank the real test images (gallery); mAP@R and precision@1,
each query's own real source excluded.

Utility: the ORIGINAL classifier (trained on real images, never retrained) on anonymized test
images: mean AUC over the 14 findings with a bootstrap CI (classes absent from the test split
reported), and the binary any-finding AUC.

Test images are anonymized once each (for random anonymizers: one draw per image, as a data
release would be) and embedded once; pair scores come from the embeddings through the
verifier's head, which equals scoring every pair through the full network in eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..metrics import binary_any_finding_auc, mean_auc, mean_std, retrieval_metrics, verification_auc
from ..labels import CXR14_LABELS
from ..networks import SiameseVerifier
from ..weights import load_network
from .anonymizers import build_anonymizer
from .data import DataModule
from .handlers import write_json
from .utils import get_logger, plain, resolve_device, seed_everything, unwrap
from .verifier import create_verifier_stage

__all__ = [
    "AnonymizerLike",
    "train_attacker",
    "embed_split",
    "evaluate_verification",
    "evaluate_utility",
    "run_attack",
    "evaluate_anonymizer",
]

logger = get_logger("attack")
AnonymizerLike = nn.Module | Mapping[str, Any] | None


def _make_anonymizer(spec: AnonymizerLike, seed: int, device: torch.device) -> nn.Module:
    """A module as is; a mapping is built with :func:`build_anonymizer` (its seed defaults to ``seed``)."""
    if spec is None:
        return build_anonymizer("none", device=device)
    if isinstance(spec, nn.Module):
        return spec.to(device).eval()
    spec = dict(spec)
    spec.setdefault("seed", seed)
    spec["device"] = device
    return build_anonymizer(**spec)


def _eval_loader(dataset: Any, batch_size: int, num_workers: int) -> DataLoader:
    # evaluation sees every item once, in order, whatever the distributed setting
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def train_attacker(
    anonymizer: AnonymizerLike,
    data: DataModule,
    verifier_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    patience: int | None = 5,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    progress: bool = True,
    select: str = "val_loss",
) -> tuple[SiameseVerifier, dict[str, Any]]:
    """Train a fresh verifier on pairs with both images anonymized; returns ``(verifier, summary)``.

    Validation (early stopping, checkpoint choice) uses (anonymized, real) validation pairs.
    """
    device = resolve_device(device)
    seed_everything(seed)
    anon = _make_anonymizer(anonymizer, seed, device)
    verifier = SiameseVerifier(**dict(verifier_kwargs or {}))
    stage = create_verifier_stage(
        verifier,
        data.pair_loader("train", batch_size, shuffle=True),
        data.pair_loader("val", batch_size),
        max_epochs=max_epochs,
        lr=lr,
        patience=patience,
        device=device,
        ckpt_path=ckpt_path,
        meta={"seed": seed, "data": data.describe(), "attack": True},
        train_anonymizer=anon,
        val_anonymizer=anon,
        name="attack",
        progress=progress,
        select=select,
    )
    summary = stage.run()
    return unwrap(stage.network), summary


@torch.no_grad()
def embed_split(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: DataModule,
    split: str = "test",
    anonymizer: nn.Module | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """``fn(anonymizer(x))`` for every image of a split, with the multi-hot labels: ``(outputs, labels)``."""
    device = torch.device(device)
    outs, labels = [], []
    for batch in _eval_loader(data.image_dataset(split), batch_size, data.num_workers):
        x = plain(batch["image"], device)
        if anonymizer is not None:
            x = anonymizer(x)
        outs.append(fn(x).float().cpu())
        labels.append(plain(batch["label"]).float())
    return torch.cat(outs).numpy(), torch.cat(labels).numpy()


@torch.no_grad()
def evaluate_verification(
    verifier: SiameseVerifier,
    anonymizer: nn.Module | None,
    data: DataModule,
    split: str = "test",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Verification AUC on (anonymized, real) pairs and retrieval (anonymized queries, real gallery).

    Returns:
        ``auc_pair`` (every pair once, the paper's number), ``auc_patient`` (every anchor
        patient once), ``map_at_r``, ``precision_at_1`` (fractions), and counts.
    """
    device = resolve_device(device)
    verifier = unwrap(verifier).to(device).eval()
    emb_anon, _ = embed_split(verifier.embed, data, split, anonymizer, batch_size, device)
    emb_real, _ = embed_split(verifier.embed, data, split, None, batch_size, device)
    index = {r.image: i for i, r in enumerate(data.records(split))}
    pairs = data.pairs(split)
    i1 = np.array([index[p.image1] for p in pairs])
    i2 = np.array([index[p.image2] for p in pairs])
    labels = np.array([p.label for p in pairs])
    e1 = torch.from_numpy(emb_anon[i1]).to(device)
    e2 = torch.from_numpy(emb_real[i2]).to(device)
    head_dtype = next(verifier.head.parameters()).dtype
    scores = verifier.score_embeddings(e1.to(head_dtype), e2.to(head_dtype)).reshape(-1).cpu().numpy()
    groups = data.pair_groups(split)
    ids = data.patient_ids(split)
    retrieval = retrieval_metrics(emb_anon, ids, emb_real, ids)
    return {
        "auc_pair": verification_auc(scores, labels, weighting="pair"),
        "auc_patient": verification_auc(scores, labels, groups=groups, weighting="patient"),
        "map_at_r": retrieval.map_at_r,
        "precision_at_1": retrieval.precision_at_1,
        "n_pairs": int(len(labels)),
        "n_positive_pairs": int(labels.sum()),
        "n_patients_with_positive_pairs": int(len(set(groups[labels == 1]))),
        "n_queries": retrieval.n_queries,
    }


@torch.no_grad()
def evaluate_utility(
    classifier: nn.Module,
    anonymizer: AnonymizerLike,
    data: DataModule,
    split: str = "test",
    batch_size: int = 64,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The original classifier on anonymized images: mean AUC [CI], per class, absent classes, any-finding AUC."""
    device = resolve_device(device)
    classifier = unwrap(classifier).to(device).eval()
    anon = _make_anonymizer(anonymizer, seed, device)
    logits, targets = embed_split(classifier, data, split, anon, batch_size, device)
    probs = 1.0 / (1.0 + np.exp(-logits))
    result = mean_auc(probs, targets, label_names=CXR14_LABELS, n_bootstrap=n_bootstrap, seed=seed)
    any_finding = binary_any_finding_auc(probs, targets, n_bootstrap=n_bootstrap, seed=seed)
    return {
        "mean_auc": result.mean,
        "mean_auc_ci": list(result.ci) if result.ci is not None else None,
        "per_class_auc": result.per_class,
        "classes_absent": result.skipped,
        "any_finding_auc": any_finding.auc,
        "any_finding_ci": list(any_finding.ci) if any_finding.ci is not None else None,
        "n_images": int(targets.shape[0]),
        "n_bootstrap": int(n_bootstrap),
    }


def _summarise(per_seed: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        mean, std = mean_std([float(r[key]) for r in per_seed])
        out[key] = {"mean": mean, "std": std}
    return out


def run_attack(
    anonymizer: AnonymizerLike,
    data: DataModule,
    seeds: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    verifier_kwargs: Mapping[str, Any] | None = None,
    max_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    patience: int | None = 5,
    device: str | torch.device = "cpu",
    ckpt_dir: str | os.PathLike | None = None,
    split: str = "test",
    progress: bool = True,
    select: str = "val_loss",
) -> dict[str, Any]:
    """The privacy attack over several seeds: per-seed results and mean +- std (std: ddof=1).

    Args:
        anonymizer: a module, a :func:`build_anonymizer` spec (random kinds get each attack's
            seed unless the spec fixes one), or None (real images).
        data: the data module (pairs of ``train``/``val`` for the attacker, ``split`` to test).
        seeds: attack seeds (10 in the paper).
        verifier_kwargs: the attacker's architecture (``SiameseVerifier`` arguments).
        max_epochs, batch_size, lr, patience: its training.
        ckpt_dir: keep each attacker's checkpoint there (``attack_seed<k>.pt``); None = memory only.
        select: the attacker's checkpoint choice, ``"val_loss"`` (paper), ``"val_auc"`` or ``"last"``
            (fixed budget; then ``patience`` must be None).

    Returns:
        ``{"per_seed": [...], "auc_pair": {"mean", "std"}, "auc_patient": ..., "map_at_r": ...,
        "precision_at_1": ..., "seeds": [...], "weighting": ...}`` (fractions in [0, 1]).
    """
    device = resolve_device(device)
    per_seed = []
    for seed in seeds:
        anon = _make_anonymizer(anonymizer, int(seed), device)
        ckpt = None if ckpt_dir is None else Path(ckpt_dir) / f"attack_seed{seed}.pt"
        verifier, summary = train_attacker(
            anon, data, verifier_kwargs, int(seed), max_epochs, batch_size, lr, patience, device, ckpt, progress, select
        )
        result = evaluate_verification(verifier, anon, data, split, max(batch_size, 64), device)
        result.update(seed=int(seed), epochs_run=summary["epochs_run"], best_epoch=summary["best_epoch"],
                      val_metric=summary["select_metric"], val_best=summary["best_metric"])
        logger.info(
            "attack seed %d: verification AUC %.4f (pair) / %.4f (patient), mAP@R %.4f, P@1 %.4f",
            seed, result["auc_pair"], result["auc_patient"], result["map_at_r"], result["precision_at_1"],
        )
        per_seed.append(result)
    return {
        "seeds": [int(s) for s in seeds],
        "per_seed": per_seed,
        **_summarise(per_seed, ("auc_pair", "auc_patient", "map_at_r", "precision_at_1")),
        "weighting": {
            "auc_pair": "every test pair counts once (the paper's number)",
            "auc_patient": "every anchor patient's positive and negative pairs weigh 1 each (data README caveat 5)",
        },
    }


def evaluate_anonymizer(
    anonymizer: AnonymizerLike,
    data: DataModule,
    classifier: nn.Module | str | os.PathLike,
    seeds: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    verifier_kwargs: Mapping[str, Any] | None = None,
    max_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    patience: int | None = 5,
    n_bootstrap: int = 1000,
    split: str = "test",
    device: str | torch.device = "cpu",
    output_path: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    progress: bool = True,
    select: str = "val_loss",
) -> dict[str, Any]:
    """The whole protocol for one anonymizer: :func:`run_attack` + :func:`evaluate_utility`.

    Args:
        classifier: the ORIGINAL classifier (a network or a checkpoint path).
        output_path: also write the result as JSON there.
        other arguments: see :func:`run_attack` and :func:`evaluate_utility`.

    Returns:
        ``{"anonymizer": spec, "privacy": ..., "utility": ...}``.
    """
    privacy = run_attack(
        anonymizer, data, seeds, verifier_kwargs, max_epochs, batch_size, lr, patience, device, ckpt_dir, split, progress,
        select,
    )
    if not isinstance(classifier, nn.Module):
        classifier, _ = load_network(classifier, network="AbnormalityClassifier")
    first_seed = int(seeds[0]) if len(seeds) else 0
    utility = evaluate_utility(classifier, anonymizer, data, split, max(batch_size, 64), n_bootstrap, first_seed, device)
    spec = {"kind": type(anonymizer).__name__} if isinstance(anonymizer, nn.Module) else _spec_json(anonymizer)
    result = {"anonymizer": spec, "data": data.describe(), "privacy": privacy, "utility": utility}
    if output_path is not None:
        write_json(output_path, result)
    return result


def _spec_json(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A spec without machine paths (checkpoints by file name)."""
    if not spec:
        return {"kind": "none"}
    return {k: (Path(v).name if k == "checkpoint" and v is not None else v) for k, v in spec.items() if k != "device"}
