"""pretraining stages (planned: see the issue tracker)."""
