"""Errors raised by the data layer."""


class DataUnavailable(FileNotFoundError):
    """A data set is not on this machine and cannot be downloaded.

    The message names the file, where it was looked for, and the directory to put it in.
    ``ldjax reproduce`` reports the experiment that raised it as skipped, with this message.
    """


class DataCorrupt(ValueError):
    """A data file exists but is truncated, corrupt or fails its checksum. The message names the file."""
