"""python -m ablations: the same command as `ablations`."""

import sys

from ablations.cli import main

sys.exit(main())
