"""python -m ablations: the same command as `ablations`."""

import sys

from ablations.cli.main import main

sys.exit(main())
