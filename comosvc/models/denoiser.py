"""The denoiser network F: BiDilConv, a non-causal WaveNet over mel frames.

``F(c_in x, c_noise, mu)`` is the raw network of the EDM parametrisation
(:meth:`comosvc.models.edm.EDM.denoised` wraps it into the preconditioned denoised
estimate ``D``; "denoiser" in this package always means this network). Layout, as in the
reference (Amphion ``BiDilConv`` with ``conditioner_size = n_mels``: the
conditioner is the prior's coarse mel ``mu``):

* input 1x1 conv ``n_mels -> C`` + ReLU;
* ``layers`` residual blocks, dilation ``2 ** (i mod cycle)``: add the step embedding,
  dilated conv ``C -> 2C`` plus a 1x1 conv of ``mu`` ``n_mels -> 2C``, gate
  ``tanh(a) * sigmoid(b)``, 1x1 conv ``C -> 2C`` split into residual and skip,
  ``x = (x + residual) / sqrt(2)``;
* skips summed / ``sqrt(layers)`` -> 1x1 conv + ReLU -> zero-initialised 1x1 conv to ``n_mels``.

Step embedding: 128-d sinusoidal embedding of ``c_noise`` (cos | sin, max period
10000), then Linear(128, 512) SiLU Linear(512, 512) SiLU Linear(512, C).

Masking: padded frames are zeroed before every convolution wider than one frame,
so they never reach valid frames (the reference masks only the loss).

Variants (config switches, measured in docs/benchmarks.md "Teacher quality"):

* ``model.denoiser_linear_paths`` (on by default; off is the reference network) adds
  ``a(s) * x_in + b(s) * mu`` to the output, with per-bin gains ``a``, ``b``
  ``(B, n_mels)`` from a zero-initialised Linear of the step embedding (so a fresh
  network computes what the reference's does). At low noise the network must pass
  its input through with a gain of about ``1 / s``; the gated WaveNet learns that
  slowly, a linear path at once;
"""

from __future__ import annotations

import math

import torch
from torch import nn

from comosvc.config import ModelConfig


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``(B,)`` real values -> ``(B, dim)`` ``[cos(v f_k) | sin(v f_k)]``, ``f_k = max_period ** (-k / (dim/2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = values.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class StepEmbedding(nn.Module):
    """``c_noise`` ``(B,)`` -> ``(B, C)``: sinusoidal embedding then a 3-layer SiLU MLP."""

    def __init__(self, embed_dim: int, hidden: int, channels: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, channels),
        )

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(c_noise, self.embed_dim).to(self.mlp[0].weight.dtype))


class ResidualBlock(nn.Module):
    """One gated dilated-conv block on ``(B, C, T)``; returns ``(x_next, skip)``."""

    def __init__(self, channels: int, n_mels: int, kernel: int, dilation: int):
        super().__init__()
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.conditioner = nn.Conv1d(n_mels, 2 * channels, 1)
        self.output = nn.Conv1d(channels, 2 * channels, 1)
        for conv in (self.dilated_conv, self.conditioner, self.output):
            nn.init.kaiming_normal_(conv.weight)

    def forward(
        self, x: torch.Tensor, step: torch.Tensor, mu: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = (x + step[:, :, None]) * keep
        h = self.dilated_conv(h) + self.conditioner(mu)
        filt, gate = h.chunk(2, dim=1)
        h = torch.tanh(filt) * torch.sigmoid(gate)
        residual, skip = self.output(h).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class BiDilConv(nn.Module):
    """``F(x_in, c_noise, mu, mask)``: ``x_in`` ``(B, T, n_mels)`` (already scaled by ``c_in``),
    ``c_noise`` ``(B,)``, ``mu`` ``(B, T, n_mels)``, ``mask`` ``(B, T)`` bool -> ``(B, T, n_mels)``, 0 on padding.
    """

    def __init__(self, config: ModelConfig, n_mels: int):
        super().__init__()
        channels = config.denoiser_channels
        self.input = nn.Sequential(nn.Conv1d(n_mels, channels, 1), nn.ReLU())
        self.step_embedding = StepEmbedding(config.step_embed_dim, config.step_mlp_hidden, channels)
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, n_mels, config.denoiser_kernel, 2 ** (i % config.denoiser_dilation_cycle))
            for i in range(config.denoiser_layers)
        )
        self.output = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.ReLU(), nn.Conv1d(channels, n_mels, 1))
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)
        # per-bin gains of the linear paths x_in -> out and mu -> out, from the step embedding
        self.linear_gains = nn.Linear(channels, 2 * n_mels) if config.denoiser_linear_paths else None
        if self.linear_gains is not None:
            nn.init.zeros_(self.linear_gains.weight)
            nn.init.zeros_(self.linear_gains.bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].to(x_in.dtype)
        x = self.input(x_in.transpose(1, 2))
        mu = mu.transpose(1, 2) * keep
        step = self.step_embedding(c_noise)
        skips = 0.0
        for block in self.blocks:
            x, skip = block(x, step, mu, keep)
            skips = skips + skip
        out = (self.output(skips / math.sqrt(len(self.blocks))) * keep).transpose(1, 2)
        if self.linear_gains is not None:
            gain_x, gain_mu = self.linear_gains(step)[:, None, :].chunk(2, dim=-1)  # (B, 1, n_mels) each
            out = out + (gain_x * x_in + gain_mu * mu.transpose(1, 2)) * keep.transpose(1, 2)
        return out


__all__ = ["BiDilConv", "ResidualBlock", "StepEmbedding", "sinusoidal_embedding"]
