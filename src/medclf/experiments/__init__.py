"""Runs: one lifecycle for every model family, the folder it writes, the runner."""
