"""Build hook: the bundle's default weights travel with the package.

``build_py`` copies ``bundle/models/model.pt`` (with ``model.json``) and
``bundle/configs/metadata.json`` (which records its SHA-256) -- and the configs that state the
benchmark's default set-up (``train.json``, ``evaluate.json``, ``benchmark.json``) -- into ``monai_prichexy/_bundle/``
of the build, so a wheel (``pip install .``, not editable) has the default weights wherever it
is installed; :func:`monai_prichexy.bundle_files.bundle_root` finds them there.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGED = ("models/model.pt", "models/model.json", "models/verifier.pt", "models/metric.pt", "models/classifier.pt",
            "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/benchmark.json")


class BuildPyWithWeights(build_py):
    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "bundle"
        target = Path(self.build_lib) / "monai_prichexy" / "_bundle"
        for name in PACKAGED:
            if (source / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, target / name)


setup(cmdclass={"build_py": BuildPyWithWeights})
