"""alignment stages (planned: see the issue tracker)."""
