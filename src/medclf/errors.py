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


class SettingError(ConfigError):
    """A setting's value is out of its range or of the wrong type: a usage error (exit 2)."""


def did_you_mean(value, choices) -> str:
    """ " (did you mean 'torch-ffn'?)" for a near miss among ``choices``, else ""."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
