"""`python -m maskopt`: the `maskopt` command."""

import sys

from maskopt.app.cli import main

sys.exit(main())
