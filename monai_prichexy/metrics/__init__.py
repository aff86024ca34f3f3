"""Evaluation metrics of PriCheXy-Net (Packhäuser et al., MICCAI 2023).

- privacy: :func:`verification_auc` / :class:`VerificationAUC` (Siamese attack ROC AUC,
  optionally patient-weighted) and :func:`retrieval_metrics` (mAP@R, precision@1;
  Packhäuser et al., Sci. Rep. 2022);
- utility: :func:`mean_auc` (mean per-class AUC with bootstrap CI) / :class:`MeanAUC`, and
  :func:`binary_any_finding_auc`;
- summary: :func:`privacy_closure`, :func:`utility_retention`, :func:`mean_std`,
  :class:`SummaryRow`.

AUC functions return fractions in [0, 1]; the summary functions take percentages by default.
"""

from .classification import (
    CXR14_LABELS,
    BinaryAUC,
    BinaryAUCResult,
    MeanAUC,
    MeanAUCResult,
    binary_any_finding_auc,
    binary_auc,
    mean_auc,
    utility_aucs,
    within_chance,
)
from .retrieval import RetrievalResult, retrieval_metrics
from .summary import SummaryRow, mean_std, privacy_closure, utility_retention
from .verification import VerificationAUC, patient_pair_weights, verification_auc

__all__ = [
    "CXR14_LABELS",
    "BinaryAUC",
    "BinaryAUCResult",
    "MeanAUC",
    "MeanAUCResult",
    "RetrievalResult",
    "SummaryRow",
    "VerificationAUC",
    "binary_any_finding_auc",
    "binary_auc",
    "mean_auc",
    "mean_std",
    "patient_pair_weights",
    "privacy_closure",
    "retrieval_metrics",
    "utility_aucs",
    "utility_retention",
    "verification_auc",
    "within_chance",
]
