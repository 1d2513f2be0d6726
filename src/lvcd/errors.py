"""User-facing errors: each says what is wrong and what to do."""


class LVCDError(Exception):
    """Base class for errors shown to users without a traceback by the CLI."""


class InputError(LVCDError, ValueError):
    """A user input (image, video, folder, option) is unusable."""


class WeightsError(LVCDError, ValueError):
    """A weights file is missing, corrupt, truncated, swapped or of another model."""
