"""MONAI Label app of PriCheXy-Net: annotators see only anonymized radiographs.

MONAI Label 0.8.5 needs numpy 1.26 and pydicom 2, the project numpy 2 and pydicom 3, so the
app runs in its own environment (``monai_prichexy/label/requirements.txt``) and drives the
batch anonymization through the ``monai-prichexy anonymize`` command of the main environment
(:mod:`.cache`); only the ``anonymize`` infer task (:mod:`.infer`, torch + MONAI) runs in the
server's process. Start it with::

    python -m monai_prichexy.label start --input IN --work WORK --key-file KEY --anonymizer MAIN_ENV/bin/monai-prichexy

and map labels back to the originals, in the main environment, with ``monai-prichexy
label-map`` (:mod:`.mapping`). See ``docs/label.md``.

Importing this package imports neither MONAI Label nor pydicom: :mod:`.app`,
:mod:`.datastore` and :mod:`.infer` need MONAI Label, :mod:`.mapping` the main environment.
"""

from .settings import ENV, LabelSettings

__all__ = ["ENV", "LabelSettings"]
