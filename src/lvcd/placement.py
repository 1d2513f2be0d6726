"""Where the model's parts are during a shot, and the host copies of those that move.

A shot runs in three phases, each using some parts (``PHASE_PARTS``). By default the parts used all through a shot
(UNet, ControlNet, and the VAE, which decodes) stay on the accelerator, and the conditioner (CLIP and its VAE
encoder: 1.4 GB in bf16, used once per shot) is there only while it embeds the reference; with ``offload`` each
phase has only its own parts there. ``lvcd.memory_estimate`` follows the same rules.

A part that moves keeps its weights in host memory for the pipeline's life (page-locked on CUDA, so the copy to the
GPU is asynchronous and at full bus speed): bringing it to the accelerator is one host-to-device copy, sending it
away drops the device copy and copies nothing back. Parameters and buffers keep their identity (their ``.data``
changes), so compiled graphs and other references to them stay valid. The weights are taken as they are when the
placement is made: change weights before building a pipeline, not while one runs (it only does inference).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lvcd.model import PART_ATTRIBUTES, LVCDModel

# The parts each phase of a shot uses. CLIP stands for the whole conditioner (CLIP and its VAE encoder).
PHASE_PARTS = {
    "conditioning": ("clip", "first_stage"),  # the reference (and keyframes) embedded and encoded
    "sampling": ("unet", "controlnet"),  # the windows
    "decoding": ("first_stage",),  # latents to frames, chunk by chunk
}
# Without offloading these stay on the accelerator all through a shot; the conditioner joins them when a phase uses it.
RESIDENT_PARTS = ("unet", "controlnet", "first_stage")


def parts_on_accelerator(phase_parts: Iterable[str], offload: bool) -> set[str]:
    """The parts on the accelerator during a phase that uses ``phase_parts``."""
    return set(phase_parts) if offload else {*phase_parts, *RESIDENT_PARTS}


class HostCopy:
    """A module's parameters and buffers kept in host memory; the module computes either on them or on copies of
    them on an accelerator (``to_device``), which ``to_host`` drops without copying anything back."""

    def __init__(self, module: nn.Module, pin: bool):
        self._tensors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (the module's tensor, host copy)
        for owner in module.modules():
            for tensor in (*owner._parameters.values(), *owner._buffers.values()):
                if tensor is not None and id(tensor) not in self._tensors:
                    host = _host_tensor(tensor.detach(), pin)
                    tensor.data = host  # one tensor at a time: the previous copy is freed before the next is made
                    self._tensors[id(tensor)] = (tensor, host)

    @property
    def pinned(self) -> bool:
        return any(host.is_pinned() for _, host in self._tensors.values())

    def to_device(self, device: torch.device) -> None:
        for tensor, host in self._tensors.values():
            tensor.data = host.to(device, non_blocking=host.is_pinned())

    def to_host(self) -> None:
        for tensor, host in self._tensors.values():
            tensor.data = host

    @property
    def on_host(self) -> bool:
        """Whether the module computes on its host copies now (read from its tensors)."""
        return all(tensor.data_ptr() == host.data_ptr() for tensor, host in self._tensors.values())


def _host_tensor(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    host = tensor.to("cpu")  # a tensor already in host memory is its own copy unless it is to be page-locked
    if pin:
        try:
            return host.pin_memory()
        except RuntimeError:  # no page-locked memory to be had: pageable copies work, only slower
            return host
    return host


class Placement:
    """Keeps the parts of ``model`` where the phases of a shot need them (see the module's docstring).

    ``device``: the accelerator (nothing moves when it is ``host``); ``offload``: every part leaves the accelerator
    when not in use, not only the conditioner; ``fixed``: nothing ever moves (for a caller that places the model
    itself, e.g. evaluation during training, which shares the training's modules)."""

    def __init__(
        self,
        model: LVCDModel,
        device: torch.device,
        offload: bool = False,
        fixed: bool = False,
        host: torch.device = torch.device("cpu"),
    ):
        self.model, self.device = model, device
        moves = device != host and not fixed
        self.offload = offload and moves
        attributes = {PART_ATTRIBUTES[part] for part in model.parts}
        resident = set() if self.offload else {PART_ATTRIBUTES[part] for part in RESIDENT_PARTS}
        self._homes: dict[str, HostCopy] = {}
        for attribute in sorted(attributes):
            module = getattr(model, attribute)
            if moves and attribute not in resident:
                self._homes[attribute] = HostCopy(module, pin=device.type == "cuda")
            else:
                module.to(device)
        self._fixed = attributes - set(self._homes)

    @property
    def pinned(self) -> bool:
        """Whether the host copies of the parts that move are page-locked (False when none move)."""
        return any(home.pinned for home in self._homes.values())

    @property
    def on_device(self) -> set[str]:
        """The model's attributes (``model``, ``control_model``, ``conditioner``, ...) on the accelerator now (on
        ``device`` when nothing moves)."""
        return self._fixed | {attribute for attribute, home in self._homes.items() if not home.on_host}

    def place(self, *phase_parts: str) -> None:
        """Put the parts a phase using ``phase_parts`` needs on the accelerator and send the other movable ones to
        host memory."""
        wanted = {PART_ATTRIBUTES[part] for part in parts_on_accelerator(phase_parts, self.offload)}
        left = False
        for attribute, home in self._homes.items():
            if attribute in wanted and home.on_host:
                home.to_device(self.device)
            elif attribute not in wanted and not home.on_host:
                home.to_host()
                left = True
        if left and self.device.type == "cuda":
            torch.cuda.empty_cache()  # give the freed weights back, for other processes sharing the GPU
