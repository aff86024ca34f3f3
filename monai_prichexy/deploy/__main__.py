"""``python -m monai_prichexy.deploy -i IN -o OUT -m MODEL``: run the MONAI Deploy application.

Absolute imports on purpose: in a MONAI Application Package this folder is the application
directory and is run as ``python3 /opt/holoscan/app`` (a script, not a package).
"""

import sys

from monai_prichexy.deploy.app import main

if __name__ == "__main__":
    sys.exit(main())
