"""Colorizing many shots: a manifest, a pool of workers (this machine or a Ray cluster), restartable, reported.

- :mod:`lvcd.batch.manifest`: the shot list (CSV or JSON) -> :class:`ShotSpec` with :class:`ShotSettings`
- :mod:`lvcd.batch.shot`: :class:`ShotRunner`, one worker's model and the run of one shot (any scheduler)
- :mod:`lvcd.batch.dispatch`: shots handed to free workers; a dead worker's shot is retried elsewhere
- :mod:`lvcd.batch.local`: :class:`InProcessPool`, :class:`ProcessPool` (one process per GPU)
- :mod:`lvcd.batch.ray_pool`: :class:`RayPool` (optional ``ray``)
- :mod:`lvcd.batch.run`: :func:`run_batch` (skip complete shots, progress, ``batch_report.json``)
- :mod:`lvcd.batch.evaluate`: scoring the outputs with :mod:`lvcd.metrics`

    >>> from lvcd.batch import InProcessPool, ModelSpec, read_shots, run_batch, model_identity    # doctest: +SKIP
    >>> model = ModelSpec("svd.safetensors", "lvcd.ckpt")                                         # doctest: +SKIP
    >>> report = run_batch(read_shots("film.csv"), "out", InProcessPool(model),
    ...                    model_identity(model.svd, model.lvcd, None, None))                     # doctest: +SKIP
"""

from lvcd.batch.dispatch import WorkerLost, WorkerPool, dispatch
from lvcd.batch.layout import BatchLayout, OutdirClaim, claim_outdir, model_identity
from lvcd.batch.local import InProcessPool, ProcessPool, local_devices
from lvcd.batch.manifest import ShotSettings, ShotSpec, read_shots
from lvcd.batch.ray_pool import RayPool
from lvcd.batch.report import BatchReport
from lvcd.batch.run import BatchOptions, run_batch
from lvcd.batch.shot import ModelSpec, ShotJob, ShotResult, ShotRunner

__all__ = [
    "BatchLayout",
    "BatchOptions",
    "BatchReport",
    "InProcessPool",
    "ModelSpec",
    "OutdirClaim",
    "ProcessPool",
    "RayPool",
    "ShotJob",
    "ShotResult",
    "ShotRunner",
    "ShotSettings",
    "ShotSpec",
    "WorkerLost",
    "WorkerPool",
    "claim_outdir",
    "dispatch",
    "local_devices",
    "model_identity",
    "read_shots",
    "run_batch",
]
