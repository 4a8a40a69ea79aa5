"""`python -m microrep` runs the command-line interface."""

import sys

from microrep.cli import main

sys.exit(main())
