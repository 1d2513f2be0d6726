"""`lvcd ui`: a local web page to colorize a shot: upload the coloured reference and the line art, get a video.

- :mod:`lvcd.ui.uploads`: uploads as pipeline inputs, checked, in natural order of the user's file names
- :mod:`lvcd.ui.jobs`: ``colorize_upload`` (one job: settings, progress with ETA, cancellation, cleanup)
- :mod:`lvcd.ui.page`: the gradio page (``build_app``, ``launch_page``); needs ``pip install 'lvcd[ui]'``

    >>> from lvcd.ui import launch_page                                                # doctest: +SKIP
    >>> launch_page(LVCDPipeline.from_single_file("svd.safetensors", "lvcd.ckpt"))    # doctest: +SKIP
"""

from __future__ import annotations

from lvcd.ui.jobs import JobCancelled, JobResult, JobSettings, PageLimits, check_settings, colorize_upload

__all__ = [
    "JobCancelled",
    "JobResult",
    "JobSettings",
    "PageLimits",
    "build_app",
    "check_settings",
    "colorize_upload",
    "launch_page",
]


def __getattr__(name: str):
    # The page needs gradio (an extra); the job functions do not.
    if name in ("build_app", "launch_page"):
        try:
            from lvcd.ui import page
        except ImportError as err:
            if "gradio" not in str(err):
                raise
            from lvcd.errors import InputError

            raise InputError("The web page needs gradio: pip install 'lvcd[ui]'.") from err
        return getattr(page, name)
    raise AttributeError(f"module 'lvcd.ui' has no attribute {name!r}")
