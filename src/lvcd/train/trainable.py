"""What LVCD trains (spec §4.4), the official ControlNet initialisation from the UNet (spec §2.1 step 4), and
gradient checkpointing applied from the outside.

Trainable: every ControlNet parameter, and in the UNet only the spatial Reference Attention and the temporal
masked self-attention (``transformer_blocks.0.attn1`` / ``time_stack.0.attn1``). Everything else is frozen. This is
exactly the key set of ``lvcd.ckpt`` (``lvcd.weights.lvcd_trained_keys``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lvcd.model import PART_PREFIXES, LVCDModel
from lvcd.models.unet import Stage

UNET_TRAINABLE_MODULES = (".transformer_blocks.0.attn1.", ".time_stack.0.attn1.")
# Parameters that cannot change the output: both cross-attentions attend to ONE CLIP token, so the softmax is exactly
# 1 and the query/key projections (and norm2, which only feeds the query) get exactly zero gradient, in the official
# code too. Excluded from the optimizer so data parallelism does not wait for gradients that never come.
SINGLE_TOKEN_CROSS_ATTENTION_UNUSED = (
    ".attn2.to_q.",
    ".attn2.to_k.",
    ".transformer_blocks.0.norm2.",
    ".time_stack.0.norm2.",
)


TRAINABLE_SETS = ("lvcd", "all")


def is_trainable_key(key: str, which: str = "lvcd") -> bool:
    """Whether an official state-dict key is trained: ``which='lvcd'`` is the official set (ControlNet + the UNet's
    spatial/temporal self-attention), ``'all'`` every UNet and ControlNet tensor (training from scratch)."""
    if which not in TRAINABLE_SETS:
        raise ValueError(f"Unknown trainable set {which!r}; choose from {TRAINABLE_SETS}.")
    if key.startswith(PART_PREFIXES["controlnet"]):
        return True
    if not key.startswith(PART_PREFIXES["unet"]):
        return False
    return which == "all" or any(part in key for part in UNET_TRAINABLE_MODULES)


def trainable_keys(model: LVCDModel, which: str = "lvcd") -> list[str]:
    """The state-dict keys a checkpoint of this trainable set holds, in module order."""
    return [key for key in model.state_dict() if is_trainable_key(key, which)]


def trainable_parameters(model: LVCDModel, which: str = "lvcd") -> Iterator[tuple[str, nn.Parameter]]:
    """(official name, parameter) of every parameter of the trainable set, in module order."""
    for name, parameter in model.named_parameters():
        if is_trainable_key(name, which):
            yield name, parameter


def is_unreachable_key(key: str) -> bool:
    """Whether a parameter gets exactly zero gradient by construction (see SINGLE_TOKEN_CROSS_ATTENTION_UNUSED)."""
    return any(part in key for part in SINGLE_TOKEN_CROSS_ATTENTION_UNUSED)


def optimized_parameters(model: LVCDModel, which: str = "lvcd") -> Iterator[tuple[str, nn.Parameter]]:
    """The trainable parameters that can receive a gradient: what the optimizer steps."""
    for name, parameter in trainable_parameters(model, which):
        if not is_unreachable_key(name):
            yield name, parameter


def set_trainable(model: LVCDModel, which: str = "lvcd") -> list[str]:
    """Freeze everything, then unfreeze the trainable set (``'lvcd'``, the official one, or ``'all'``); train mode on
    the UNet and ControlNet.

    Returns the trainable parameter names (official keys). Of these, the ones that get zero gradient by construction
    (the cross-attention query/key and norm2 feeding a single CLIP token, 56 ControlNet tensors in the official set)
    keep ``requires_grad=False``: they stay as initialised (the official AdamW would only weight-decay them, which
    changes no output).
    """
    model.requires_grad_(False)
    model.eval()
    names = []
    for name, parameter in trainable_parameters(model, which):
        parameter.requires_grad_(not is_unreachable_key(name))
        names.append(name)
    for part in ("model", "control_model"):
        if hasattr(model, part):
            getattr(model, part).train()
    return names


@torch.no_grad()
def init_controlnet_from_unet(model: LVCDModel, seed: int = 0) -> dict[str, list[str]]:
    """The official ``init_from_unet``: copy every UNet tensor whose key the ControlNet shares (time/label
    embeddings, input blocks, middle block); zero the 12 zero convs and ``middle_block_out``; give the hint encoder
    PyTorch's default init (drawn from ``seed``) with its last conv zeroed.

    Afterwards the ControlNet outputs zeros, so the model equals SVD. Returns {'copied', 'zeroed', 'default'} keys.
    """
    controlnet, unet = model.control_model, model.unet
    unet_state = unet.state_dict()
    copied, zeroed, default = [], [], []
    for key, tensor in controlnet.state_dict(keep_vars=True).items():
        if key.startswith(("zero_convs.", "middle_block_out.")):
            tensor.zero_()
            zeroed.append(key)
        elif key.startswith("input_hint_block."):
            continue
        elif key in unet_state and unet_state[key].shape == tensor.shape:
            tensor.copy_(unet_state[key])
            copied.append(key)
        else:
            raise RuntimeError(f"ControlNet tensor {key} has no UNet counterpart to initialise from.")
    convs = [m for m in controlnet.input_hint_block if isinstance(m, nn.Conv2d)]
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        for conv in convs[:-1]:
            conv.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)
    convs[-1].weight.zero_()
    convs[-1].bias.zero_()
    for key in controlnet.input_hint_block.state_dict():
        (zeroed if key.startswith(f"{len(controlnet.input_hint_block) - 1}.") else default).append(
            f"input_hint_block.{key}"
        )
    return {"copied": copied, "zeroed": zeroed, "default": default}


# ------------------------------------------------------------------------------------------------ checkpointing


def _checkpointed_forward(stage: Stage, original, *args, **kwargs):
    if stage.training and torch.is_grad_enabled():
        return checkpoint(original, *args, use_reentrant=False, **kwargs)
    return original(*args, **kwargs)


def enable_gradient_checkpointing(model: LVCDModel) -> int:
    """Recompute each block (``Stage``) of the UNet and the ControlNet in the backward pass instead of storing its
    activations. Replaces the stages' ``forward`` on the instances only: parameter names do not change.

    Non-reentrant checkpointing, so frozen early layers and inputs without grad need no workaround. Returns the
    number of wrapped stages.
    """
    stages: list[Stage] = []
    for network in (model.unet, model.control_model):
        stages.extend(network.input_blocks)
        stages.append(network.middle_block)
        stages.extend(getattr(network, "output_blocks", []))
    for stage in stages:
        if "forward" in stage.__dict__:  # already wrapped
            continue
        original = type(stage).forward.__get__(stage)
        stage.forward = functools.partial(_checkpointed_forward, stage, original)
    return len(stages)


def disable_gradient_checkpointing(model: LVCDModel) -> None:
    for module in model.modules():
        if isinstance(module, Stage):
            module.__dict__.pop("forward", None)


# ------------------------------------------------------------------------------------------------ from scratch

# Layers sgm creates with ``zero_module`` (residual branches start as identity) and the ControlNet's zero layers.
SCRATCH_ZERO_INIT = (
    ".out_layers.3.",  # the last conv of every ResBlock (spatial and time_stack)
    ".proj_out.",  # every SpatialVideoTransformer's output projection
    "model.diffusion_model.out.2.",  # the UNet's output conv
    "control_model.zero_convs.",
    "control_model.middle_block_out.",
)


@torch.no_grad()
def build_from_scratch(config, seed: int) -> LVCDModel:
    """UNet + ControlNet with PyTorch's default init drawn from ``seed``, then zeros where sgm uses ``zero_module``
    and in the ControlNet's zero convs and the hint encoder's last conv (so training starts from a UNet whose
    residual branches are identities and a ControlNet that outputs zeros)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LVCDModel(config, parts=("unet", "controlnet"))
    state = model.state_dict(keep_vars=True)
    for key, tensor in state.items():
        if any(part in key for part in SCRATCH_ZERO_INIT):
            tensor.zero_()
    last_hint_conv = [m for m in model.control_model.input_hint_block if isinstance(m, nn.Conv2d)][-1]
    last_hint_conv.weight.zero_()
    last_hint_conv.bias.zero_()
    return model
