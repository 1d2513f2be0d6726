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

import contextlib
from collections.abc import Iterable, Iterator

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


# Page-locked host memory is handed out in powers of two (PyTorch's host allocator rounds every request up): host
# copies are packed into slabs of this size (the last one of a module smaller), not allocated one tensor at a time,
# which would lock about 1.35x the weights' bytes (8.3 GB for the 6.2 GB of the model's bf16 weights).
SLAB_BYTES = 64 * 2**20
_ALIGN = 512  # bytes between packed tensors' starts: any dtype's alignment, and the kernels' preferred one


class HostCopy:
    """A module's parameters and buffers kept in host memory; the module computes either on them or on copies of
    them on an accelerator (``to_device``), which ``to_host`` drops without copying anything back.

    ``pin``: page-locked host copies, packed into slabs (``pack_into_slabs``), so copies to the GPU run
    asynchronously at full bus speed. Without ``pin`` a tensor already in host memory is its own copy."""

    def __init__(self, module: nn.Module, pin: bool):
        tensors: dict[int, torch.Tensor] = {}
        for owner in module.modules():
            for tensor in (*owner._parameters.values(), *owner._buffers.values()):
                if tensor is not None:
                    tensors.setdefault(id(tensor), tensor)
        copies = (
            pack_into_slabs(list(tensors.values()), pin) if pin else (t.detach().to("cpu") for t in tensors.values())
        )
        self._tensors = []  # (the module's tensor, its host copy)
        for tensor, host in zip(tensors.values(), copies, strict=True):
            tensor.data = host  # one tensor at a time: its previous storage is freed before the next copy is made
            self._tensors.append((tensor, host))
        self.pinned = pin and all(host.is_pinned() for _, host in self._tensors)

    def to_device(self, device: torch.device) -> None:
        for tensor, host in self._tensors:
            tensor.data = host.to(device, non_blocking=True)  # the host copies never change: safe from any memory

    def to_host(self) -> None:
        for tensor, host in self._tensors:
            tensor.data = host

    @property
    def on_host(self) -> bool:
        """Whether the module computes on its host copies now (read from its tensors)."""
        return all(tensor.data_ptr() == host.data_ptr() for tensor, host in self._tensors)


def pack_into_slabs(tensors: list[torch.Tensor], pin: bool, slab_bytes: int = SLAB_BYTES) -> Iterator[torch.Tensor]:
    """Contiguous host copies of ``tensors``, one at a time, as views into a few byte buffers: slabs of
    ``slab_bytes``, the last one the power of two that holds what is left; a tensor larger than a slab gets its own
    buffer. ``pin``: page-locked buffers (pageable ones, slower to copy from, when no more can be had)."""
    sizes = [_aligned(t.numel() * t.element_size()) for t in tensors]
    left = sum(size for size in sizes if size <= slab_bytes)  # bytes still to place in slabs
    slab, used = None, 0
    for tensor, size in zip(tensors, sizes, strict=True):
        if size > slab_bytes:
            buffer, offset = _host_buffer(size, pin), 0
        else:
            if slab is None or used + size > slab.numel():
                slab, used = _host_buffer(min(slab_bytes, _power_of_two(left)), pin), 0
            buffer, offset = slab, used
            used += size
            left -= size
        nbytes = tensor.numel() * tensor.element_size()
        yield buffer[offset : offset + nbytes].view(tensor.dtype).view(tensor.shape).copy_(tensor.detach())


def _host_buffer(nbytes: int, pin: bool) -> torch.Tensor:
    if pin:
        try:
            return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        except RuntimeError:  # no page-locked memory to be had: pageable memory works, only slower
            pass
    return torch.empty(nbytes, dtype=torch.uint8)


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


def _power_of_two(nbytes: int) -> int:
    return 1 << max(nbytes - 1, 0).bit_length()


def offloads(device: torch.device, offload: bool, fixed: bool = False, host=torch.device("cpu")) -> bool:
    """Whether a ``Placement`` of these arguments offloads: parts move only to an accelerator, and not when fixed."""
    return offload and device != host and not fixed


def host_attributes(
    model: LVCDModel, device: torch.device, offload: bool, fixed: bool = False, host=torch.device("cpu")
) -> set[str]:
    """The model's attributes whose weights a ``Placement`` of these arguments keeps in host memory: all of them when
    the device is the host, those that move (kept there for the pipeline's life) otherwise, none when fixed."""
    attributes = {PART_ATTRIBUTES[part] for part in model.parts}
    if device == host:
        return attributes
    if fixed:
        return set()
    resident = set() if offloads(device, offload, fixed, host) else {PART_ATTRIBUTES[p] for p in RESIDENT_PARTS}
    return attributes - resident


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
        self.device = device
        moves = device != host and not fixed
        self.offload = offloads(device, offload, fixed, host)
        attributes = {PART_ATTRIBUTES[part] for part in model.parts}
        moving = host_attributes(model, device, offload, fixed, host) if moves else set()
        self._homes: dict[str, HostCopy] = {}
        # page-locking host memory creates a CUDA context on the current GPU if there is none: make it the one used
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            for attribute in sorted(attributes):
                module = getattr(model, attribute)
                if attribute in moving:
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
        leaving = [home for attribute, home in self._homes.items() if attribute not in wanted and not home.on_host]
        for home in leaving:  # first, so that the parts coming in can take their memory
            home.to_host()
        if leaving and self.device.type == "cuda":
            torch.cuda.empty_cache()  # give the freed weights back, for other processes sharing the GPU
        for attribute, home in self._homes.items():
            if attribute in wanted and home.on_host:
                home.to_device(self.device)
