"""`python -m maskopt`: the `maskopt` command."""

import sys

from maskopt.cli import main

sys.exit(main())
