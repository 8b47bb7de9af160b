"""``python -m era_core.readme``: see :mod:`era_core.readme.cli`."""

from era_core.readme.cli import main

raise SystemExit(main())
