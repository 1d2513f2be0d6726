"""Where the networks are during a shot (``lvcd.placement``). By default the conditioner (CLIP and its VAE encoder) is
on the accelerator only while it embeds the reference; with ``offload=True`` every network is there only while in use.
Checked on CPU with ``cpu:0`` standing in for the GPU (a tensor moved there is a new copy): whether a network is on
the "accelerator" is read from its tensors inside each phase."""

from __future__ import annotations

import copy

import pytest
import torch

from lvcd.devices import default_device, default_dtype
from lvcd.memory import MemoryAccount, weight_bytes
from lvcd.pipeline import LVCDPipeline
from lvcd.placement import PHASE_PARTS, HostCopy, Placement, pack_into_slabs

ACCELERATOR = torch.device("cpu", 0)  # compares unequal to torch.device("cpu"), so placements are told apart
PARTS = ("model", "control_model", "conditioner", "first_stage_model")


def shot(pipe: LVCDPipeline, **options):
    generator = torch.Generator().manual_seed(0)
    lineart = (torch.rand(16, 1, 64, 64, generator=generator) > 0.9).float()
    reference = torch.rand(3, 64, 64, generator=generator)
    return pipe(reference, lineart, num_steps=1, seed=1, polarity="bright-lines", progress=False, **options)


def on_host(module: torch.nn.Module, host_storage: dict[int, int]) -> bool:
    """Whether every tensor of ``module`` computes on the storage it had when it was at home."""
    return all(t.data_ptr() == host_storage[id(t)] for t in (*module.parameters(), *module.buffers()))


def placed_pipeline(model, offload: bool) -> tuple[LVCDPipeline, dict[str, set]]:
    """A pipeline on the stand-in accelerator whose phases record which networks are there while they run."""
    homes = {id(t): t.data_ptr() for t in (*model.parameters(), *model.buffers())}  # all in host memory now
    pipe = LVCDPipeline(model)
    pipe.device, pipe.placement = ACCELERATOR, Placement(model, ACCELERATOR, offload=offload)
    seen: dict[str, set] = {"clip": set(), "denoise": set(), "decode": set()}

    def snapshot(phase, function):
        def wrapped(*args, **kwargs):
            present = tuple(name for name in PARTS if not on_host(getattr(model, name), homes))
            seen[phase].add(present)
            return function(*args, **kwargs)

        return wrapped

    model.embed_reference = snapshot("clip", model.embed_reference)
    model.denoise = snapshot("denoise", model.denoise)
    model.vae.decode = snapshot("decode", model.vae.decode)
    return pipe, seen


@pytest.fixture
def own_model(tiny_model):
    return copy.deepcopy(tiny_model)  # placements change the tensors' storage: keep the session's model as it is


@torch.no_grad()
def test_offload_keeps_only_the_networks_in_use_on_the_device(own_model):
    pipe, seen = placed_pipeline(own_model, offload=True)
    shot(pipe)
    assert seen["clip"] == {("conditioner", "first_stage_model")}
    assert seen["denoise"] == {("model", "control_model")}
    assert seen["decode"] == {("first_stage_model",)}


@torch.no_grad()
def test_by_default_only_the_conditioner_leaves_the_device(own_model):
    pipe, seen = placed_pipeline(own_model, offload=False)
    assert pipe.placement.on_device == {"model", "control_model", "first_stage_model"}  # built with CLIP away
    shot(pipe)
    shot(pipe)  # a second shot brings the conditioner back
    assert seen["clip"] == {PARTS}
    assert seen["denoise"] == {("model", "control_model", "first_stage_model")}
    assert seen["decode"] == {("model", "control_model", "first_stage_model")}
    assert pipe.placement.on_device == {"model", "control_model", "first_stage_model"}


@torch.no_grad()
def test_previous_sample_references_keep_the_conditioner_while_sampling(own_model):
    pipe, seen = placed_pipeline(own_model, offload=True)
    shot(pipe, reference_mode="previous-sample")
    assert seen["denoise"] == {PARTS}  # the last frame of a window is embedded again for the next


@torch.no_grad()
def test_placements_give_the_same_frames(own_model):
    """Moving networks copies weights, never changes them: every placement colorizes the shot identically (compared
    on the stand-in device: computing on ``cpu:0`` rather than ``cpu`` already differs in the last bits)."""
    frames = {}
    for mode in ("fixed", "default", "offload"):
        model = copy.deepcopy(own_model)
        pipe = LVCDPipeline(model)
        placement = Placement(model, ACCELERATOR, offload=mode == "offload", fixed=mode == "fixed")
        pipe.device, pipe.placement = ACCELERATOR, placement
        frames[mode] = shot(pipe).frames
        assert torch.equal(shot(pipe).frames, frames[mode])  # again, after the networks went away and came back
    assert torch.equal(frames["default"], frames["fixed"]) and torch.equal(frames["offload"], frames["fixed"])


def test_leaving_the_device_copies_nothing_back():
    """A network sent home computes on its host copy again: the same storage, the same parameter objects."""
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    parameters = list(module.parameters())
    home = HostCopy(module, pin=False)
    host_storage = [p.data_ptr() for p in parameters]
    home.to_device(ACCELERATOR)
    assert list(module.parameters()) == parameters and all(
        p is q for p, q in zip(module.parameters(), parameters, strict=True)
    )
    assert all(p.data_ptr() != ptr for p, ptr in zip(parameters, host_storage, strict=True))  # computing on copies
    assert not home.on_host and home.pinned is False
    home.to_host()
    assert [p.data_ptr() for p in parameters] == host_storage and home.on_host
    running_mean, stored = module[1].running_mean, module[1].running_mean.data_ptr()
    home.to_device(ACCELERATOR)
    assert module[1].running_mean is running_mean and running_mean.data_ptr() != stored  # buffers move too


def test_host_copies_are_packed_into_power_of_two_slabs():
    """Page-locked memory comes in powers of two: host copies share a few slabs (the last one only as large as what
    is left needs) instead of one rounded-up allocation each. On this CPU-only machine the slabs are pageable."""
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(30, 7, generator=generator), torch.randn(300, generator=generator).bfloat16(),
               torch.zeros(0), torch.arange(10), torch.randn(2000, generator=generator),  # 8 kB: its own buffer
               torch.randn(5, 3, generator=generator).t()]  # fmt: skip
    copies = list(pack_into_slabs(tensors, pin=True, slab_bytes=4096))
    for tensor, copy_ in zip(tensors, copies, strict=True):
        assert copy_.dtype == tensor.dtype and copy_.shape == tensor.shape and torch.equal(copy_, tensor)
        assert copy_.is_contiguous() and copy_.data_ptr() % 64 == 0
    buffers = {c.untyped_storage().data_ptr(): c.untyped_storage().nbytes() for c in copies if c.numel()}
    slab_sizes = sorted(size for size in buffers.values() if size != 8192)
    # 30x7 fp32 (840 -> 1024 aligned), 300 bf16 (600 -> 1024), 10 int64 (-> 512), 5x3 fp32 (-> 512): 3072 in one
    # slab sized to the power of two that holds them
    assert slab_sizes == [4096] and sorted(buffers.values()) == [4096, 8192]
    assert not any(c.is_pinned() for c in copies)


def test_a_packed_host_copy_moves_like_any_other(tiny_model):
    module = copy.deepcopy(tiny_model.conditioner)
    expected = {name: t.clone() for name, t in module.state_dict().items()}
    home = HostCopy(module, pin=True)  # packs into slabs (pageable here: no page-locked memory without CUDA)
    assert home.on_host and not home.pinned
    assert len({t.untyped_storage().data_ptr() for t in module.parameters()}) < len(list(module.parameters())) / 10
    home.to_device(ACCELERATOR)
    assert not home.on_host
    assert all(torch.equal(t, expected[name]) for name, t in module.state_dict().items())
    home.to_host()
    assert home.on_host and all(torch.equal(t, expected[name]) for name, t in module.state_dict().items())


def test_fixed_placement_moves_nothing(own_model):
    """Evaluation during training shares the training's modules: a pipeline must not take any of them away."""
    placement = Placement(own_model, ACCELERATOR, fixed=True)  # all of it on the device, once
    before = {id(t): t.data_ptr() for t in own_model.parameters()}
    for phase in PHASE_PARTS.values():
        placement.place(*phase)
    assert {id(t): t.data_ptr() for t in own_model.parameters()} == before
    assert placement.on_device == set(PARTS)
    pipe = LVCDPipeline(own_model, fixed_placement=True)
    shot(pipe)
    assert pipe.placement.on_device == set(PARTS) and not pipe.offload


def test_on_a_cpu_nothing_moves(own_model):
    before = {id(t): t.data_ptr() for t in own_model.parameters()}
    pipe = LVCDPipeline(own_model, device="cpu", offload=True)
    assert not pipe.offload
    shot(pipe)
    assert {id(t): t.data_ptr() for t in own_model.parameters()} == before


def test_the_default_device_is_the_gpu_when_there_is_one(monkeypatch):
    assert default_device("cpu") == torch.device("cpu") and default_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda") and default_device(None) == torch.device("cuda")


def test_default_dtype_is_bf16_on_cuda_only(monkeypatch):
    assert default_dtype("cuda") == torch.bfloat16 and default_dtype(torch.device("cuda", 1)) == torch.bfloat16
    assert default_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, expected in (((9, 0), torch.bfloat16), ((8, 6), torch.bfloat16), ((7, 5), torch.float16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert default_dtype("cuda:0") == expected  # no bf16 tensor cores before Ampere: fp16, as officially


def test_memory_account_splits_weights_by_part(tiny_model):
    sizes = weight_bytes(tiny_model, "cpu")
    assert set(sizes) == {"model", "control_model", "conditioner", "first_stage_model"}
    unet = sum(p.numel() * p.element_size() for p in tiny_model.unet.parameters())
    unet += sum(b.numel() * b.element_size() for b in tiny_model.unet.buffers())
    assert sizes["model"] == unet > 0
    assert weight_bytes(tiny_model, "meta") == dict.fromkeys(sizes, 0)
    with MemoryAccount.measure(tiny_model, "cpu") as account:
        pass
    report = account.as_dict()
    assert report["weights_total_bytes"] == sum(sizes.values())
    assert report["activations_bytes"] is None and report["workspace_bytes"] is None  # known on CUDA only
    done = MemoryAccount({"model": 100}, peak_allocated_bytes=250, peak_reserved_bytes=400)
    assert (done.activations_bytes, done.workspace_bytes) == (150, 150)
