"""User-facing errors: each says what is wrong and what to do."""


class LVCDError(Exception):
    """Base class for errors shown to users without a traceback by the CLI."""


class InputError(LVCDError, ValueError):
    """A user input (image, video, folder, option) is unusable."""


class WeightsError(LVCDError, ValueError):
    """A weights file is missing, corrupt, truncated, swapped or of another model."""


class Interrupted(LVCDError):
    """The user stopped the job (Ctrl-C: exit code 130, SIGTERM: 143); the message says how to continue it."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
