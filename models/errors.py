"""The exception root of the domain package."""


class ClvError(Exception):
    """Root of every exception raised by `models`."""


class FitError(ClvError):
    """A population model fit failed or produced unusable parameters."""


class ConfigError(ClvError):
    """A configuration file or value is invalid."""
