"""Which anonymizers a benchmark profile asks for, and what must be trained for them.

Every row is ``(name, anonymizer spec, info)``. A profile's ``benchmark`` section lists:

- ``mus``: PriCheXy-Net trained with the paper's protocol at each mu (rows ``prichexy_mu<mu>``);
- ``frontier.budgets_px``: a generator within each displacement budget (px at 256 x 256)
  trained against the refreshed attacker ensemble (rows ``ensemble_b<budget>``);
- ``random_control``: a random deformation matched to every learned row's displacement
  (rows ``random_deformation_<learned row>``), right after it (data README caveat 6);
- ``blur``: Gaussian blur rows (``blur_s<sigma>``), ``dppix`` (``dppix_b<b>``), ``privacy_net``.

The real-image row comes first. Trained PriCheXy-Net files (``--model``) give rows
``model_<name>`` with their controls instead of the profile's learned rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engines.anonymizers import build_anonymizer
from ..engines.experiment import Experiment

__all__ = ["Row", "benchmark_rows", "model_rows", "control_spec"]

Row = tuple[str, "dict[str, Any] | None", "dict[str, Any]"]


def control_spec(exp: Experiment, network: Any, displacement: Mapping[str, Any]) -> dict[str, Any]:
    """A random deformation with a learned field's mean interior displacement, operator, working size and budget."""
    control = exp.config["benchmark"].get("random_control") or {}
    size = network.working_size
    return {
        "kind": "random_deformation",
        "mean_displacement": float(displacement["interior"]["mean_normalised"]),
        "field_sigma": float(control.get("field_sigma", 4.0)),
        "smoothing": network.smoothing,
        "working_size": None if size is None else int(size[0]),
        "budget_px": network.budget_px,
    }


def _learned_with_control(exp: Experiment, row: str, spec: dict[str, Any], info: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [(row, spec, info)]
    if exp.config["benchmark"].get("random_control"):
        network = build_anonymizer(**spec, device=exp.device)
        disp = exp.field_displacement(network)
        rows[0][2]["displacement_val"] = disp
        rows.append((f"random_deformation_{row}", control_spec(exp, network, disp),
                     {"matched_to": row, "displacement_val": disp, **{k: v for k, v in info.items() if k == "mu"}}))
    return rows


def benchmark_rows(exp: Experiment) -> list[Row]:
    """Train what the profile's rows need and return them in table order."""
    bench = exp.config["benchmark"]
    exp.classifier_pretrain()
    rows: list[Row] = [("real", None, {})]
    for mu in [float(m) for m in bench.get("mus", [])]:
        path = exp.adversarial(mu)
        rows += _learned_with_control(exp, f"prichexy_mu{mu:g}", {"kind": "prichexy", "checkpoint": str(path)}, {"mu": mu})
    for budget in (bench.get("frontier") or {}).get("budgets_px", []):
        path = exp.ensemble(float(budget))
        rows += _learned_with_control(exp, f"ensemble_b{float(budget):g}", {"kind": "prichexy", "checkpoint": str(path)},
                                      {"budget_px": float(budget)})
    for sigma in (bench.get("blur") or {}).get("sigma", []):
        rows.append((f"blur_s{float(sigma):g}", {"kind": "blur", "sigma": float(sigma)}, {}))
    dppix = bench.get("dppix") or {}
    for b in dppix.get("b", []):
        spec = {"kind": "dppix", "b": int(b), "eps": float(dppix.get("eps", 0.1)), "m": float(dppix.get("m", 1.0))}
        rows.append((f"dppix_b{int(b)}", spec, {}))
    if bench.get("privacy_net", True):
        path = exp.adversarial(None)
        rows.append(("privacy_net", {"kind": "privacy_net", "checkpoint": str(path)}, {}))
    return rows


def model_rows(exp: Experiment, models: Sequence[str | os.PathLike]) -> list[Row]:
    """Rows for trained PriCheXy-Net files (e.g. the bundle's ``models/model.pt``), each with its control.

    Every model is evaluated as it is (its own mu, smoothing, working size and budget) beside the
    real row; the utility classifier is the profile's (trained on real images).
    """
    rows: list[Row] = [("real", None, {})]
    for path in models:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        spec = {"kind": "prichexy", "checkpoint": str(path)}
        network = build_anonymizer(**spec, device=exp.device)
        info = {"mu": float(network.mu), "model": path.name,
                "method": f"PriCheXy-Net {path.name} (mu={network.mu:g})"}
        rows += _learned_with_control(exp, f"model_{path.stem}", spec, info)
        rows[-1][2]["method"] = f"random deformation (as {path.name})"
    return rows
