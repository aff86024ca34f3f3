"""monai_prichexy: PriCheXy-Net anonymization of chest radiographs as a MONAI plugin.

Packhäuser et al., "Deep Learning-based Anonymization of Chest Radiographs: A
Utility-preserving Measure for Patient Privacy", MICCAI 2023.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
