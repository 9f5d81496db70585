"""The data pipeline's exceptions and its warning, in a module of their own so that every reader
can raise them."""


class DataError(Exception):
    """The data on disk is not what the pipeline needs (missing or empty folder...)."""


class ImageError(DataError):
    """One image file cannot be decoded; the message names the file and the reason."""


class SkippedImageWarning(UserWarning):
    """An unreadable image was left out of a data set; the message names it and says why."""
