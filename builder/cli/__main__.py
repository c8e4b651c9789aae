"""`python -m builder.cli`: the `bundle` command, as the installed console script runs it."""

import sys

from builder.cli import main

sys.exit(main())
