"""The 14 ChestX-ray14 finding labels in the order every network output and target uses.

Wang et al., CVPR 2017; the order of Packhäuser et al., MICCAI 2023. "No Finding" is the
all-zeros vector.
"""

__all__ = ["CXR14_LABELS", "NO_FINDING"]

CXR14_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

NO_FINDING = "No Finding"
