#!/usr/bin/env python
"""Run the PriCheXy-Net benchmark (the paper's Table 1); see ``monai_prichexy.benchmark``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai_prichexy.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
