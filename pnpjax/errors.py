"""The project's error classes, all here: each is reported by the CLI as one line and exit status 2.

The modules that raise them re-export their own (`camera.CameraError`, `layouts.LayoutError`,
`tfjs.ExportError`, `tfjs.ModelFormatError`), so either import works.
"""


class PnpjaxError(Exception):
    """Base class of errors a user can cause (bad input, bad file, bad option).

    Its message is always one line: user text in it (a layout name, a path, an option value) has its
    line breaks and other control characters escaped (textsafe.one_line)."""

    def __str__(self) -> str:
        from pnpjax.textsafe import one_line

        return one_line(super().__str__())


class ConfigError(PnpjaxError, ValueError):
    """Unknown config name or an invalid config value."""


class CheckpointError(PnpjaxError, OSError):
    """Missing, corrupt or incompatible checkpoint."""


class InputError(PnpjaxError, ValueError):
    """Landmark input of the wrong shape, type or with non-finite values."""


class NonFiniteLossError(PnpjaxError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class CameraError(PnpjaxError, ValueError):
    """A camera specification that cannot be used."""


class LayoutError(PnpjaxError, ValueError):
    """A layout that cannot be used."""


class ExportError(PnpjaxError, ValueError):
    """A model that cannot be written (bad arguments, existing output, non-finite weights)."""


class ModelFormatError(PnpjaxError, ValueError):
    """A TF.js layers model on disk that is malformed, unsafe or unsupported."""


class NodeUnavailableError(PnpjaxError, RuntimeError):
    """Node.js or the web/ npm dependencies are not installed."""


class NodeToolError(PnpjaxError, RuntimeError):
    """A Node script ran but failed (bad model, bad input, TF.js error)."""
