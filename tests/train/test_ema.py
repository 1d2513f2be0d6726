"""The weight average (EMA): the formula, updated in one fused op per step."""

from __future__ import annotations

import torch

from lvcd.train.ema import WeightAverage


def test_the_average_follows_its_formula_exactly_with_the_warm_up():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    names = [name for name, _ in net.named_parameters()][1:]  # not every parameter is trained
    ema = WeightAverage(net, names, decay=0.99)
    expected = {name: p.detach().clone() for name, p in net.named_parameters()}
    generator = torch.Generator().manual_seed(1)
    for step in range(1, 40):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
        ema.update(net)
        decay = min(0.99, (1 + step) / (10 + step))
        for name, p in net.named_parameters():
            if name in names:
                expected[name].lerp_(p.detach(), 1 - decay)
    state = ema.state()
    assert list(state) == names and all(torch.equal(state[name], expected[name]) for name in names)
    untrained = dict(ema.model.named_parameters())["0.weight"]
    assert torch.equal(untrained, expected["0.weight"])  # left as it was copied


def test_a_resumed_average_continues_where_it_was():
    net = torch.nn.Linear(4, 4)
    names = ["weight", "bias"]
    first = WeightAverage(net, names, decay=0.9)
    first.update(net)
    second = WeightAverage(torch.nn.Linear(4, 4), names, decay=0.9)
    second.load(first.state(), first.updates)
    with torch.no_grad():
        net.weight.add_(1.0)
    first.update(net)
    second.update(net)
    assert second.updates == first.updates == 2
    assert all(torch.equal(a, b) for a, b in zip(first.state().values(), second.state().values(), strict=True))
