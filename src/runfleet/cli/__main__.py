"""``python -m runfleet.cli``: the ``runfleet`` command."""

from runfleet.cli import main

raise SystemExit(main())
