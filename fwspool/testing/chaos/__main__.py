"""``python -m fwspool.testing.chaos``: the same command line as ``tools/chaos.py``."""

import sys

from fwspool.testing.chaos.runner import main

sys.exit(main())
