"""The exception root of the domain package."""


class ClvError(Exception):
    """Root of every exception raised by `models`."""


class FitError(ClvError):
    """A population model fit failed or produced unusable parameters."""


class NotEnoughData(FitError):
    """Too little data to fit yet (history, customers): expected early on, not a fault."""


class ConfigError(ClvError):
    """A configuration file or value is invalid."""
