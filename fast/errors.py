"""The data pipeline's exceptions, in a module of their own so that every reader can raise them
(``fast.data`` re-exports both)."""


class DataError(Exception):
    """The data on disk is not what the pipeline needs (missing or empty folder...)."""


class ImageError(DataError):
    """One image file cannot be decoded; the message names the file and the reason."""
