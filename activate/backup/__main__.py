"""python3 -B -m activate.backup [--config PLAN] [run | list | restore ...] (GEN/scripts/backup.py)."""

import sys

from .cli import main

sys.exit(main())
