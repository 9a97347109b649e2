"""Example runfleet plug-ins, registered through entry points (see pyproject.toml)."""
