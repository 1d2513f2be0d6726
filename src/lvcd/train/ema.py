"""An exponential moving average of the trained weights (``train.ema_decay``), kept as a frozen copy of the model.

>>> ema = WeightAverage(net, names, decay=0.999)   # names: the trained parameters     # doctest: +SKIP
>>> ema.update(net)                                  # after every optimizer step         # doctest: +SKIP
>>> ema.model                                        # an LVCDModel to sample or save     # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch

from lvcd.model import LVCDModel


class WeightAverage:
    """``average <- average + (1 - decay) (weights - average)`` over the named parameters, after every step.

    The effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so the average is
    not dominated by the random initial weights of a run from scratch.
    """

    def __init__(self, model: LVCDModel, names: list[str], decay: float):
        self.decay = decay
        self.names = list(names)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0
        self._lists: tuple[LVCDModel, list[torch.Tensor], list[torch.Tensor]] | None = None

    def _pairs(self, model: LVCDModel) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(averages, weights) in ``names`` order; looked up once per trained model, not every step."""
        if self._lists is None or self._lists[0] is not model:
            source = dict(model.named_parameters())
            target = dict(self.model.named_parameters())
            self._lists = (model, [target[n] for n in self.names], [source[n] for n in self.names])
        return self._lists[1], self._lists[2]

    @torch.no_grad()
    def update(self, model: LVCDModel) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averages, weights = self._pairs(model)
        weights = [
            w.detach() if w.dtype == a.dtype else w.detach().to(a.dtype) for a, w in zip(averages, weights, strict=True)
        ]
        # one fused op over every tensor (a GPU would otherwise launch one small kernel per tensor, 1,234 for the
        # demo model: more launches than its whole forward pass)
        torch._foreach_lerp_(averages, weights, 1.0 - decay)

    def state(self) -> dict[str, torch.Tensor]:
        tensors = dict(self.model.named_parameters())
        return {name: tensors[name].detach() for name in self.names}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        target = dict(self.model.named_parameters())
        for name in self.names:
            target[name].copy_(tensors[name])
        self.updates = updates
