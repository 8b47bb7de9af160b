"""``python -m era_core.tools.readme``: see :mod:`era_core.tools.readme.command`."""

from era_core.tools.readme.command import main

raise SystemExit(main())
