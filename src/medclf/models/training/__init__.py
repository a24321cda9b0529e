"""What both model families share: the per-epoch history record."""
