"""Experiments: sets of runs (the study, benchmarks, tuning), how they execute, tracking."""
