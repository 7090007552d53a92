"""The project's error classes: each is reported by the CLI as one line and a non-zero exit."""


class PnpjaxError(Exception):
    """Base class of errors a user can cause (bad input, bad file, bad option)."""


class ConfigError(PnpjaxError, ValueError):
    """Unknown config name or an invalid config value."""


class CheckpointError(PnpjaxError, OSError):
    """Missing, corrupt or incompatible checkpoint."""


class InputError(PnpjaxError, ValueError):
    """Landmark input of the wrong shape, type or with non-finite values."""


class NonFiniteLossError(PnpjaxError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
