"""`python -m numba_gn` runs the `numba-gn` command."""

import sys

from numba_gn.cli import main

sys.exit(main())
