"""Limits that several layers check values against (a bottom module: it imports nothing)."""

MAX_SEED = 2**32 - 1  # numpy's seeding limit
