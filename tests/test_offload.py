"""``offload=True``: only the networks a phase needs are on the accelerator (CLIP and the VAE leave it while the
UNet and ControlNet sample; those leave it for the decode). Checked on CPU with ``cpu:0`` standing in for the GPU:
every ``.to()`` of a part is recorded, and the placement is looked at inside each phase."""

from __future__ import annotations

import torch

from lvcd.pipeline import LVCDPipeline, default_dtype

ACCELERATOR = torch.device("cpu", 0)  # compares unequal to torch.device("cpu"), so placements are told apart


@torch.no_grad()
def test_offload_keeps_only_the_networks_in_use_on_the_device(tiny_model, monkeypatch):
    parts = {
        "unet": tiny_model.model,
        "controlnet": tiny_model.control_model,
        "clip+encoder": tiny_model.conditioner,
        "vae": tiny_model.first_stage_model,
    }
    placement = dict.fromkeys(parts, "cpu")
    for name, module in parts.items():
        original = module.to

        def recording_to(*args, _name=name, _original=original, **kwargs):
            placement[_name] = str(torch.device(args[0]) if args else kwargs["device"])
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "to", recording_to)
    seen: dict[str, set] = {"clip": set(), "denoise": set(), "decode": set()}

    def snapshot(phase, function):
        def wrapped(*args, **kwargs):
            seen[phase].add(tuple(sorted(n for n, d in placement.items() if d == str(ACCELERATOR))))
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(tiny_model, "embed_reference", snapshot("clip", tiny_model.embed_reference))
    monkeypatch.setattr(tiny_model, "denoise", snapshot("denoise", tiny_model.denoise))
    monkeypatch.setattr(tiny_model.vae, "decode", snapshot("decode", tiny_model.vae.decode))
    pipe = LVCDPipeline(tiny_model)
    pipe.device, pipe.offload = ACCELERATOR, True
    generator = torch.Generator().manual_seed(0)
    lineart = (torch.rand(16, 1, 64, 64, generator=generator) > 0.9).float()
    pipe(torch.rand(3, 64, 64, generator=generator), lineart, num_steps=1, seed=1, polarity="bright-lines",
         progress=False)  # fmt: skip
    assert seen["clip"] == {("clip+encoder", "vae")}
    assert seen["denoise"] == {("controlnet", "unet")}
    assert seen["decode"] == {("vae",)}


def test_default_dtype_is_bf16_on_cuda_only():
    assert default_dtype("cuda") == torch.bfloat16 and default_dtype(torch.device("cuda", 1)) == torch.bfloat16
    assert default_dtype("cpu") == torch.float32


def test_memory_account_splits_weights_by_part(tiny_model):
    from lvcd.memory import MemoryAccount, weight_bytes

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
