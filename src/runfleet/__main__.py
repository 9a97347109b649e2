"""``python -m runfleet`` runs the command line."""

from runfleet.cli import main

raise SystemExit(main())
