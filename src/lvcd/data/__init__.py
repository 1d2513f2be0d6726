"""Training data: scene splitting, ``lvcd data prepare``, the on-disk layout and the training dataset.

>>> from lvcd.data import LVCDClipDataset, prepare_dataset, split_scenes   # doctest: +SKIP
"""

from lvcd.data.dataset import LVCDClipDataset, Sample, build_samples
from lvcd.data.latents import VAELatentEncoder
from lvcd.data.layout import DatasetLayout, merge_shard_indexes
from lvcd.data.prepare import Lazy, PrepareOptions, PrepareReport, prepare_dataset
from lvcd.data.root import write_index
from lvcd.data.scenes import SceneSplit, SceneSplitConfig, color_histogram, histogram_rmse, split_scenes

__all__ = [
    "DatasetLayout",
    "LVCDClipDataset",
    "Lazy",
    "PrepareOptions",
    "PrepareReport",
    "Sample",
    "SceneSplit",
    "SceneSplitConfig",
    "VAELatentEncoder",
    "build_samples",
    "color_histogram",
    "histogram_rmse",
    "merge_shard_indexes",
    "prepare_dataset",
    "split_scenes",
    "write_index",
]
