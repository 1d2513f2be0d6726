"""The training loss against the official fixture, the trainable set, the ControlNet init and checkpointing."""

from __future__ import annotations

import copy

import torch

from lvcd.models.transformer import ClipLayout
from lvcd.train.loss import build_conditioning, diffusion_loss, draw_sigma_and_noise
from lvcd.train.trainable import (
    disable_gradient_checkpointing,
    enable_gradient_checkpointing,
    init_controlnet_from_unet,
    optimized_parameters,
    set_trainable,
    trainable_parameters,
)
from lvcd.weights import lvcd_trained_keys

from .conftest import SyntheticClips


def fixture_batch(components) -> dict[str, torch.Tensor]:
    """The fixture's loss batch (group f) as our training batch: one clip of 15 frames."""
    return {
        "latents": components["loss.jpg"],  # (1, 15, 4, 8, 16) scaled, reference first
        "control_hint": components["train.control_hint_1ch"].expand(-1, 3, -1, -1)[None],  # (1, 15, 3, 64, 128)
        "reference": components["clip.image"],  # (1, 3, 64, 128)
        "fps_id": torch.full((1, 15), 6, dtype=torch.int64),
        "motion_bucket_id": torch.full((1, 15), 160, dtype=torch.int64),
        "cond_aug": torch.zeros(1, 15),
    }


def synthetic_batch(num_frames: int = 4) -> dict[str, torch.Tensor]:
    item = SyntheticClips(num_clips=1, num_frames=num_frames)[0]
    return {key: value[None] for key, value in item.items()}


def test_loss_matches_official_training_loss(tiny_parts, components):
    net, encoders = tiny_parts
    batch = fixture_batch(components)
    cond = build_conditioning(encoders, batch)
    with torch.no_grad():
        out = diffusion_loss(
            net, batch["latents"], cond, sigma=components["loss.sigma"], noise=components["loss.noise"]
        )
    expected = components["loss.value"].item()
    relative = abs(out.loss.item() - expected) / abs(expected)
    print(f"loss {out.loss.item():.7f} vs official {expected:.7f}: relative error {relative:.2e}")
    assert relative <= 1e-5
    scale = components["loss.denoised"].abs().max()
    assert (out.denoised - components["loss.denoised"]).abs().max() <= 1e-4 * scale


def test_conditioning_matches_official_conditioner(tiny_parts, components):
    _, encoders = tiny_parts
    cond = build_conditioning(encoders, fixture_batch(components))
    assert (
        cond.concat.shape == (15, 4, 8, 16) and cond.crossattn.shape == (15, 1, 64) and cond.vector.shape == (15, 768)
    )
    assert (cond.vector - components["train.vector"]).abs().max() <= 1e-5
    assert (cond.concat - components["train.concat"]).abs().max() <= 1e-4 * components["train.concat"].abs().max()
    assert (cond.crossattn - components["train.crossattn"]).abs().max() <= 1e-4 * components[
        "train.crossattn"
    ].abs().max()


def test_sigma_then_noise_from_the_generator():
    latents = torch.zeros(2, 3, 4, 8, 8)
    sigma, noise = draw_sigma_and_noise(latents, 1.0, 1.6, torch.Generator().manual_seed(7))
    reference = torch.Generator().manual_seed(7)
    expected_sigma = (1.0 + 1.6 * torch.randn(2, generator=reference)).exp()
    expected_noise = torch.randn((6, 4, 8, 8), generator=reference)
    assert sigma.shape == (2,) and torch.equal(sigma, expected_sigma) and torch.equal(noise, expected_noise)


def test_one_sigma_per_clip_and_weighting(tiny_parts):
    """Two clips in one batch = the mean of the two clips' losses computed alone (each with its own sigma)."""
    net, encoders = tiny_parts
    batch_a, batch_b = synthetic_batch(), synthetic_batch()
    batch_b["latents"] = batch_b["latents"].flip(1)
    both = {key: torch.cat([batch_a[key], batch_b[key]]) for key in batch_a}
    sigma = torch.tensor([0.3, 4.0])
    noise = torch.randn((8, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        joint = diffusion_loss(net, both["latents"], build_conditioning(encoders, both), sigma=sigma, noise=noise)
        alone = [
            diffusion_loss(
                net,
                b["latents"],
                build_conditioning(encoders, b),
                sigma=sigma[i : i + 1],
                noise=noise[4 * i : 4 * i + 4],
            )
            for i, b in enumerate((batch_a, batch_b))
        ]
    assert joint.frame_losses.shape == (8,)
    torch.testing.assert_close(joint.loss, (alone[0].loss + alone[1].loss) / 2, rtol=1e-5, atol=0)
    # The weight is (sigma^2 + 1) / sigma^2 on the squared error of every frame, the reference frame included.
    frame = (joint.denoised[0] - both["latents"][0, 0]) ** 2
    torch.testing.assert_close(joint.frame_losses[0], frame.mean() * (0.3**2 + 1) / 0.3**2, rtol=1e-5, atol=0)


def test_trainable_set_is_the_lvcd_key_set(tiny_parts):
    net = copy.deepcopy(tiny_parts[0])
    names = set_trainable(net)
    assert names == lvcd_trained_keys(net)
    assert len(names) == 831  # 671 ControlNet + 160 UNet attention tensors (spec §5.3)
    unet_trainable = [n for n in names if n.startswith("model.diffusion_model.")]
    assert len(unet_trainable) == 160
    assert all(".transformer_blocks.0.attn1." in n or ".time_stack.0.attn1." in n for n in unet_trainable)
    # What the optimizer steps: the set minus the 56 ControlNet tensors that get zero gradient by construction.
    optimized = {name for name, p in net.named_parameters() if p.requires_grad}
    assert optimized == {name for name, _ in optimized_parameters(net)}
    unreachable = set(names) - optimized
    assert len(unreachable) == 8 * 7 and all(n.startswith("control_model.") for n in unreachable)


def test_controlnet_init_from_unet_outputs_zeros(tiny_parts):
    net = copy.deepcopy(tiny_parts[0])
    report = init_controlnet_from_unet(net, seed=0)
    controlnet, unet = net.control_model, net.unet
    unet_state = unet.state_dict()
    for key in report["copied"]:
        assert torch.equal(controlnet.state_dict()[key], unet_state[key]), key
    prefixes = {key.split(".")[0] for key in report["copied"]}
    assert prefixes == {"time_embed", "label_emb", "input_blocks", "middle_block"}
    assert len(report["zeroed"]) == 2 * 13 + 2  # zero convs, middle_block_out, the hint encoder's last conv
    assert all(not controlnet.state_dict()[k].any() for k in report["zeroed"])
    assert len(report["default"]) == 14 and all(controlnet.state_dict()[k].any() for k in report["default"])
    # Deterministic hint-encoder init, and the global RNG is left alone.
    before_state = {k: v.clone() for k, v in controlnet.state_dict().items()}
    rng = torch.random.get_rng_state()
    init_controlnet_from_unet(net, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(v, before_state[k]) for k, v in controlnet.state_dict().items())

    generator = torch.Generator().manual_seed(3)
    frames = 4
    x = torch.randn((frames, 8, 8, 8), generator=generator)
    hint = torch.rand((frames, 3, 64, 64), generator=generator)
    with torch.no_grad():
        outs = controlnet(x, hint, torch.full((frames,), 0.3), torch.randn((frames, 1, 64), generator=generator),
                          torch.randn((frames, 768), generator=generator), ClipLayout.training(frames))  # fmt: skip
    assert len(outs) == 13 and all(not o.any() for o in outs)


def test_gradient_checkpointing_keeps_loss_and_gradients(tiny_parts):
    net = copy.deepcopy(tiny_parts[0])
    set_trainable(net)
    _, encoders = tiny_parts
    batch = synthetic_batch(num_frames=3)
    cond = build_conditioning(encoders, batch)
    sigma, noise = draw_sigma_and_noise(batch["latents"], 1.0, 1.6, torch.Generator().manual_seed(0))

    def loss_and_grads():
        net.zero_grad(set_to_none=True)
        out = diffusion_loss(net, batch["latents"], cond, sigma=sigma, noise=noise)
        out.loss.backward()
        return out.loss.detach(), {n: None if p.grad is None else p.grad.clone() for n, p in trainable_parameters(net)}

    plain_loss, plain_grads = loss_and_grads()
    # Every optimized parameter gets a gradient (data parallelism needs that); the others get none at all.
    assert all(plain_grads[name] is not None for name, _ in optimized_parameters(net))
    assert all(plain_grads[name] is None for name in set(plain_grads) - {n for n, _ in optimized_parameters(net)})
    names_before = [n for n, _ in net.named_parameters()]
    assert enable_gradient_checkpointing(net) == 2 * 12 + 2 + 12
    assert [n for n, _ in net.named_parameters()] == names_before
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    disable_gradient_checkpointing(net)
    assert torch.equal(plain_loss, checkpointed_loss)
    for name, grad in plain_grads.items():
        if grad is None:
            assert checkpointed_grads[name] is None
            continue
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert all(plain_grads[n].abs().sum() > 0 for n in plain_grads if n.startswith("control_model.zero_convs"))


def test_reference_frame_is_supervised(tiny_parts):
    net, encoders = tiny_parts
    frames = 2
    batch = synthetic_batch(num_frames=frames)
    cond = build_conditioning(encoders, batch)
    sigma, noise = torch.tensor([1.5]), torch.randn((frames, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = diffusion_loss(net, batch["latents"], cond, sigma=sigma, noise=noise)
    assert out.frame_losses.shape == (frames,) and out.frame_losses[0] > 0
    torch.testing.assert_close(out.loss, out.frame_losses.mean())


def test_the_training_plan_lives_on_the_activations_device(tiny_parts, monkeypatch):
    """Every spatial attention layer indexes with the Reference Attention plan: built on the CPU, it would cost a
    blocking host-to-GPU copy per layer and step. The meta device stands in for a GPU here."""
    from lvcd.models.attention import Attention

    net, encoders = tiny_parts
    cond = build_conditioning(encoders, synthetic_batch(num_frames=4))
    net = copy.deepcopy(net).to("meta")
    cond = type(cond)(**{name: getattr(cond, name).to("meta") for name in ("concat", "crossattn", "vector", "hint")})
    seen = []
    original = Attention.reference_self_attention

    def spy(self, x, num_frames, plan, layer_index):
        seen.append((plan.key_frames.device.type, x.device.type))
        return original(self, x, num_frames, plan, layer_index)

    monkeypatch.setattr(Attention, "reference_self_attention", spy)
    latents = torch.zeros(1, 4, 4, 8, 8, device="meta")
    with torch.no_grad():
        diffusion_loss(
            net, latents, cond, sigma=torch.ones(1, device="meta"), noise=torch.zeros(4, 4, 8, 8, device="meta")
        )
    assert seen and set(seen) == {("meta", "meta")}
