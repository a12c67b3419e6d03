"""``python -m prunepilot``: the same entry point as the ``prunepilot`` command."""

import sys

from prunepilot.cli import main

sys.exit(main())
