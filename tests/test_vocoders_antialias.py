"""The polyphase anti-aliased activation (CPU inference) against the reference's computation."""

from __future__ import annotations

import pytest
import torch

from comosvc.vocoders.antialias import AntiAliasedActivation, Snake, SnakeBeta, polyphase_activation, polyphase_applies

pytestmark = pytest.mark.usefixtures("one_thread")


def _activation(kind, channels: int, logscale: bool, seed: int = 0) -> AntiAliasedActivation:
    torch.manual_seed(seed)
    module = AntiAliasedActivation(kind(channels, logscale=logscale))
    with torch.no_grad():
        for p in module.act.parameters():
            p.copy_(0.5 * torch.randn_like(p) if logscale else 0.2 + torch.rand_like(p))
    return module


def _reference(module: AntiAliasedActivation, x: torch.Tensor) -> torch.Tensor:
    return module.downsample(module.act(module.upsample(x)))


@pytest.mark.parametrize("kind", [Snake, SnakeBeta])
@pytest.mark.parametrize("logscale", [True, False])
@pytest.mark.parametrize("length", [1, 2, 3, 5, 7, 64, 331])
def test_polyphase_equals_the_reference(kind, logscale, length):
    module = _activation(kind, 8, logscale)
    x = 3 * torch.randn(2, 8, length) + torch.linspace(-2, 2, length)  # a ramp makes the ends differ
    with torch.no_grad():
        expected = _reference(module, x)
        got = polyphase_activation(module, x)
    assert got.shape == expected.shape == x.shape
    torch.testing.assert_close(got, expected, atol=2e-6 * expected.abs().max().item(), rtol=0)


def test_forward_takes_the_polyphase_path_only_for_cpu_inference():
    module = _activation(SnakeBeta, 4, True)
    x = torch.randn(1, 4, 50)
    with torch.no_grad():
        assert polyphase_applies(module, x)
    assert not polyphase_applies(module, x)  # autograd records: the reference path, which has a backward
    x.requires_grad_(True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_forward_matches_between_paths_and_keeps_its_input():
    module = _activation(Snake, 4, True)
    x = torch.randn(1, 4, 40)
    kept = x.clone()
    with torch.no_grad():
        fast = module(x)
    slow = module(x).detach()
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    assert torch.equal(x, kept)  # the in-place passes work on intermediates only
