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

    def _pairs(self, model: LVCDModel):
        source = dict(model.named_parameters())
        target = dict(self.model.named_parameters())
        return [(target[name], source[name]) for name in self.names]

    @torch.no_grad()
    def update(self, model: LVCDModel) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, weights in self._pairs(model):
            average.lerp_(weights.detach().to(average.dtype), 1.0 - decay)

    def state(self) -> dict[str, torch.Tensor]:
        tensors = dict(self.model.named_parameters())
        return {name: tensors[name].detach() for name in self.names}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        target = dict(self.model.named_parameters())
        for name in self.names:
            target[name].copy_(tensors[name])
        self.updates = updates
