"""``python -m aanntwin``: the same as the ``aanntwin`` command."""

from .cli import main

raise SystemExit(main())
