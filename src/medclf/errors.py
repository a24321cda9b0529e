"""User-facing errors.

Every message is one sentence that names the problem and the fix; the CLI prints it on one line
and exits non-zero, never with a traceback.
"""


class MedclfError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(MedclfError):
    """A dataset could not be found, fetched or trusted."""


class UnknownDatasetError(DataError):
    pass


class DownloadError(DataError):
    pass


class ChecksumError(DataError):
    pass


class NotAZipError(DataError):
    pass


class MissingKeyError(DataError):
    pass


class DTypeError(DataError):
    pass


class ShapeError(DataError):
    pass


class LengthMismatchError(DataError):
    pass


class LabelRangeError(DataError):
    pass


class EmptySplitError(DataError):
    pass


class ConfigError(MedclfError):
    """A hyperparameter or option has an invalid value."""


class InputError(MedclfError):
    """Arrays given to a model have the wrong shape, values or labels."""
