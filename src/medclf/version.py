"""medclf's version, at the bottom of the layers: run folders record it (env.json)."""

__version__ = "0.1.0"
