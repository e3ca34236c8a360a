"""``python -m remediator``: the same entry point as the ``remediator`` console script."""

from remediator.cli.main import main

raise SystemExit(main())
