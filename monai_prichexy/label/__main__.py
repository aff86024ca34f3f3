"""``python -m monai_prichexy.label start ...``: see :mod:`.launcher`."""

import sys

from monai_prichexy.label.launcher import main

if __name__ == "__main__":
    sys.exit(main())
