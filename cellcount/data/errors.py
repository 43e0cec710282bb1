"""The one error type for unusable data files and folders."""


class DataError(ValueError):
    """A data file or folder cannot be used; the message names it and says what to do."""
