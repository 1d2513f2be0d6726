"""A whole shot reads no tensor value on the host: on a GPU, ``.item()``, ``if t:``, ``nonzero``, boolean-mask
indexing, ``unique`` or an unsized ``repeat_interleave`` stall the host until the device catches up, every time they
run. Counted on the CPU with a dispatch mode over a whole two-window shot, sampling and decoding (the CPU takes the
same Python paths, except the CUDA-only attention kernel choice, which ``test_attention_kernels`` covers). Not seen
this way: ``.tolist()``, ``.cpu()`` and ``.numpy()``, which on a CPU tensor dispatch nothing."""

from __future__ import annotations

import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import TINY_CONFIG
from lvcd.pipeline import LVCDPipeline

SYNCING = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten.equal.default,
    torch.ops.aten._unique2.default,
    torch.ops.aten.repeat_interleave.Tensor,
}


class HostSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        boolean_index = func is torch.ops.aten.index.Tensor and any(
            t is not None and t.dtype == torch.bool for t in args[1]
        )
        if func in SYNCING or boolean_index:
            self.seen[str(func)] += 1
        return func(*args, **kwargs)


def test_the_counter_sees_host_reads():
    x = torch.arange(4.0)
    with HostSyncs() as counter:
        x.sum().item()
        bool(x.max() > 1)
        x[x > 1].sum()
        torch.nonzero(x)
    assert sum(counter.seen.values()) == 4, dict(counter.seen)


def test_a_shot_reads_no_tensor_value_on_the_host(tiny_weights):
    pipe = LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")
    lineart = torch.ones(16, 1, 64, 64)  # 64x64, the smallest size: two windows, every phase of a shot
    for index in range(16):
        lineart[index, :, :, 10 + 3 * index] = 0
    reference = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    counter = HostSyncs()
    with counter:
        result = pipe(reference, lineart, num_steps=2, seed=1, progress=False)
    assert result.frames.shape[0] == 16
    assert not counter.seen, dict(counter.seen)
