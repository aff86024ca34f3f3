"""Ignite/MONAI training stages of PriCheXy-Net (Packhäuser et al., MICCAI 2023) and its evaluation.

Stages (each factory returns a :class:`TrainingStage`; ``stage.run()`` trains and saves):

1. :func:`create_classifier_stage` -- abnormality classifier C (BCE over the 14 findings);
2. :func:`create_verifier_stage` -- Siamese verifier V on pairs (early stopping, patience 5);
3. :func:`create_reconstruction_stage` -- anonymizer pre-training, MSE(A(x), x);
4. :func:`create_adversarial_stage` -- the adversarial game of G against V, keeping C's utility;
5. Privacy-Net: stages 3-4 with a :class:`~monai_prichexy.networks.PrivacyNetEncoder`;
6. :func:`run_attack` / :func:`evaluate_utility` -- the evaluation protocol: the attackers of
   :mod:`~monai_prichexy.engines.attackers` (Siamese, metric learning, pixel correlation)
   retrained on an anonymized release, worst case over them, and the original classifier.

:class:`Experiment` runs all of them from one JSON profile, resumably.
"""

from .adversarial import AdversarialEvalStep, AdversarialStep, create_adversarial_stage, privacy_loss
from .anonymizers import (
    ANONYMIZER_KINDS,
    DPPixAnonymizer,
    GaussianBlur,
    IdentityAnonymizer,
    RandomDeformation,
    build_anonymizer,
    mean_displacement,
)
from .attack import (
    DEFAULT_ATTACKERS,
    evaluate_anonymizer,
    evaluate_utility,
    evaluate_verification,
    make_release,
    run_attack,
    score_attack,
)
from .attackers import ATTACKERS, AttackContext, MetricAttacker, PixelAttacker, SiameseAttacker, build_attacker
from .metric_learning import create_metric_stage
from .release import SplitImages, anonymize_images, load_split_images
from .batches import ImageLabelBatch, PairBatch, ReconstructionBatch
from .classifier import create_classifier_stage
from .data import DataModule, make_loader
from .distributed import launch
from .experiment import Experiment
from .profile import bundle_profile, deep_update, default_profile, load_profile
from .handlers import BestCheckpoint, LossHistory, SampleMean, export_bundle_model, write_json
from .reconstruction import anonymizer_meta, create_reconstruction_stage
from .stage import TrainingStage, build_supervised_stage, prepare_network, wire_stage
from .utils import build_optimizer, get_logger, resolve_device, seed_everything, unwrap
from .verifier import create_verifier_stage

__all__ = [
    "ANONYMIZER_KINDS",
    "ATTACKERS",
    "AttackContext",
    "DEFAULT_ATTACKERS",
    "GaussianBlur",
    "MetricAttacker",
    "PixelAttacker",
    "SiameseAttacker",
    "SplitImages",
    "anonymize_images",
    "build_attacker",
    "create_metric_stage",
    "load_split_images",
    "make_release",
    "score_attack",
    "AdversarialEvalStep",
    "AdversarialStep",
    "BestCheckpoint",
    "DPPixAnonymizer",
    "DataModule",
    "Experiment",
    "IdentityAnonymizer",
    "ImageLabelBatch",
    "LossHistory",
    "PairBatch",
    "RandomDeformation",
    "ReconstructionBatch",
    "SampleMean",
    "TrainingStage",
    "anonymizer_meta",
    "build_anonymizer",
    "build_optimizer",
    "build_supervised_stage",
    "create_adversarial_stage",
    "create_classifier_stage",
    "create_reconstruction_stage",
    "create_verifier_stage",
    "bundle_profile",
    "deep_update",
    "default_profile",
    "evaluate_anonymizer",
    "evaluate_utility",
    "evaluate_verification",
    "export_bundle_model",
    "get_logger",
    "launch",
    "load_profile",
    "make_loader",
    "mean_displacement",
    "prepare_network",
    "privacy_loss",
    "resolve_device",
    "run_attack",
    "seed_everything",
    "unwrap",
    "wire_stage",
    "write_json",
]
