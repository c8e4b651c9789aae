"""The switcher: receives generations and activates them on the server.

Standard library only: this package travels inside every bundle and runs with the server's
python3 (3.11 or newer) as `python3 -m activate COMMAND --state STATE --root ROOT ...`.
"""

import sys

# Generation folders are read-only snapshots; compiled caches must not be written into them,
# only under a prefix elsewhere (STATE/cache/pycache: see docs/switcher.md).
if sys.pycache_prefix is None:
    sys.dont_write_bytecode = True

MIN_PYTHON = (3, 11)
