"""Optional dependencies of the metrics (the ``eval`` extra), imported lazily with an install hint."""

from __future__ import annotations

from lvcd.errors import LVCDError

INSTALL_HINT = "pip install 'lvcd[eval]'"


class MissingDependencyError(LVCDError):
    """An optional package a metric needs is not installed; the metric is skipped, the others run."""


def import_cv2():
    """OpenCV (DIS optical flow)."""
    try:
        import cv2
    except ImportError as err:
        raise MissingDependencyError(f"OpenCV is needed for DIS optical flow: {INSTALL_HINT}") from err
    return cv2


def import_distance_transform():
    """scipy's exact Euclidean distance transform (EDMD)."""
    try:
        from scipy.ndimage import distance_transform_edt
    except ImportError as err:
        raise MissingDependencyError(f"scipy is needed for EDMD distance maps: {INSTALL_HINT}") from err
    return distance_transform_edt
