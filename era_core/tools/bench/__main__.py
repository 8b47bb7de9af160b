"""``python -m era_core.tools.bench``: the command line of ``make bench``."""

import sys

from era_core.tools.bench.runner import main

sys.exit(main())
