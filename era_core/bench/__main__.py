"""``python -m era_core.bench``: the command line of ``make bench``."""

import sys

from era_core.bench.runner import main

sys.exit(main())
