"""Data-layer causes beyond those in ``medclf.errors`` (all ``DataError``, so one line each)."""

from medclf.errors import DataError


class UnreadableError(DataError):
    """A file exists but cannot be read (permissions, a folder, an I/O error)."""


class MirrorError(DataError):
    """A mirror that is neither an http(s):// URL nor an existing folder."""


class MetaError(DataError):
    """``medclf_meta`` is not a JSON object."""


class TooManyClassesError(DataError):
    """Labels of a file of unknown dataset imply more classes than medclf reads."""
