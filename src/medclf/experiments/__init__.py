"""Runs: one folder per run (store), the train job of each model family (jobs)."""
