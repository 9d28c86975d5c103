"""synthesis stages (planned: see the issue tracker)."""
