"""The prior: a Glow-TTS style transformer encoder that predicts the coarse mel ``mu``.

The reference calls it a "conformer"; it is the Glow-TTS text encoder applied to
frames: ``layers`` post-norm blocks of relative-position self-attention and a
convolutional feed-forward, then a 1x1 projection to the mel bins. ``mu`` is the
prior loss target, the diffusion conditioner and (with ``noise_prior_mean``) the
mean of the diffusion noise.

Relative-position attention (Shaw et al. 2018, as in Glow-TTS, window ``w``):
with per-head queries/keys/values ``q, k, v`` of width ``d`` and learned
embeddings ``E_k, E_v`` of the offsets ``-w..w`` (shared by the heads)::

    logit[i, j] = (q_i . k_j + q_i . E_k[j - i]) / sqrt(d)     (E_k[r] = 0 for |r| > w)
    p[i, :]     = softmax(logit[i, :] over valid keys)
    out_i       = sum_j p[i, j] v_j + sum_{|r| <= w} p[i, i + r] E_v[r]

Two implementations of the same formula:

* :meth:`RelativeSelfAttention.attend_reference`: the straightforward one, a dense
  ``(T, T)`` softmax. Used when training with attention dropout (dropout acts on
  ``p`` exactly as in the reference).
* :meth:`RelativeSelfAttention.attend_fast`: ``scaled_dot_product_attention``
  (fused kernel, no ``(T, T)`` softmax kept for backward). The relative-key term
  only touches the ``2w + 1`` diagonals around ``i = j``: it is computed as a band
  ``(T, 2w + 1)`` and passed as the additive attention bias. The relative-value term
  needs the band of probabilities ``p[i, i + r]``, which needs the softmax
  normaliser: one extra "anchor" key with logit ``A_i`` = the largest band logit and
  a one-hot value gives ``a_i = e^A_i / (Z_i + e^A_i)`` from the same kernel call,
  hence ``Z_i`` and ``p[i, i + r] = e^(logit - A_i) a_i / (1 - a_i)``. Since
  ``Z_i >= e^A_i``, ``a_i <= 1/2`` and nothing cancels. Used for inference and
  dropout-free training; tests check both paths agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from comosvc.config import ModelConfig
from comosvc.models.masking import apply_mask, masked_mean


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with windowed relative-position keys and values.

    ``x`` ``(B, T, C)``, ``mask`` ``(B, T)`` bool -> ``(B, T, C)``. Padded frames are
    never attended to, so they cannot change valid frames.
    """

    def __init__(self, channels: int, heads: int, window: int, dropout: float = 0.0):
        super().__init__()
        if channels % heads:
            raise ValueError(f"prior hidden size {channels} must be divisible by prior_heads={heads}")
        self.heads = heads
        self.head_dim = channels // heads
        self.window = window
        self.dropout = dropout
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)
        # One embedding per offset -w..w, shared by all heads (Glow-TTS ``heads_share``).
        std = self.head_dim**-0.5
        self.rel_key = nn.Parameter(torch.randn(2 * window + 1, self.head_dim) * std)
        self.rel_value = nn.Parameter(torch.randn(2 * window + 1, self.head_dim) * std)
        for layer in (self.query, self.key, self.value):
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, frames, channels = x.shape
        q, k, v = (
            proj(x).view(batch, frames, self.heads, self.head_dim).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        if self.training and self.dropout > 0:
            out = self.attend_reference(q, k, v, mask, dropout=self.dropout)
        else:
            out = self.attend_fast(q, k, v, mask)
        return self.out(out.transpose(1, 2).reshape(batch, frames, channels))

    # ------------------------------------------------------------------ the two paths

    def attend_reference(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float = 0.0
    ) -> torch.Tensor:
        """Dense relative attention. ``q, k, v`` ``(B, H, T, d)`` -> ``(B, H, T, d)``."""
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        logits = self._add_band(logits, self._relative_key_band(q))
        logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        p = F.dropout(logits.softmax(dim=-1), dropout, self.training)
        return p @ v + self._dense_to_band(p) @ self.rel_value

    def attend_fast(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Same result as :meth:`attend_reference` (no dropout) through ``scaled_dot_product_attention``."""
        batch, heads, frames, dim = q.shape
        neg = torch.finfo(q.dtype).min
        rel_key = self._relative_key_band(q)  # (B, H, T, 2w+1)

        # Band logits (content + relative key) and the anchor A_i: the largest valid one.
        band = self._key_band(k)  # (B, H, T, 2w+1, d)
        band_logits = torch.einsum("bhtd,bhtrd->bhtr", q, band) / math.sqrt(dim) + rel_key
        band_valid = self._key_band(mask[:, None, :, None].to(q.dtype)).squeeze(-1) > 0  # (B, 1, T, 2w+1)
        band_logits = band_logits.masked_fill(~band_valid, neg)
        anchor = band_logits.amax(dim=-1, keepdim=True)  # (B, H, T, 1)

        # Attention bias over the T keys plus the anchor key (last column), built in one buffer.
        key_bias = self._add_band(q.new_zeros(batch, heads, frames, frames), rel_key)
        bias = torch.cat([key_bias.masked_fill(~mask[:, None, None, :], neg), anchor], dim=-1)
        # The anchor key is a zero vector (logit = its bias A_i); its value is 1 in an extra channel.
        zeros = q.new_zeros(batch, heads, frames, 1)
        q_ext = torch.cat([q, zeros], dim=-1)
        k_ext = torch.cat([torch.cat([k, zeros], dim=-1), q.new_zeros(batch, heads, 1, dim + 1)], dim=2)
        anchor_value = torch.cat([q.new_zeros(dim), q.new_ones(1)]).expand(batch, heads, 1, dim + 1)
        v_ext = torch.cat([torch.cat([v, zeros], dim=-1), anchor_value], dim=2)
        out = F.scaled_dot_product_attention(q_ext, k_ext, v_ext, attn_mask=bias, scale=dim**-0.5)

        anchor_share = out[..., dim:]  # a_i = e^A / (Z + e^A) <= 1/2
        rest = 1.0 - anchor_share
        band_p = torch.exp(band_logits - anchor) * (anchor_share / rest)  # p[i, i + r]
        return out[..., :dim] / rest + band_p @ self.rel_value

    # ------------------------------------------------------------------ band helpers

    def _relative_key_band(self, q: torch.Tensor) -> torch.Tensor:
        """``q_i . E_k[r] / sqrt(d)`` for offsets ``r = -w..w``: ``(B, H, T, 2w+1)``."""
        return q @ self.rel_key.t() / math.sqrt(self.head_dim)

    def _key_band(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, H, T, D)`` -> ``(B, H, T, 2w+1, D)``: entry ``[i, r]`` is ``x[i + r - w]`` (0 outside)."""
        w = self.window
        padded = F.pad(x, (0, 0, w, w))
        return padded.unfold(2, 2 * w + 1, 1).transpose(-1, -2)

    def _add_band(self, dense: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """``dense[..., i, i + r - w] += band[..., i, r]`` for ``r = 0..2w`` (keys in range only); returns ``dense``.

        ``dense`` ``(..., T, T)``, ``band`` ``(..., T, 2w+1)``; each offset is one diagonal of ``dense``.
        In place, except while ``torch.export`` traces (the ONNX export, :mod:`comosvc.onnx`): ONNX
        needs a functional graph, so there each diagonal is added with a ``where`` (same values).
        """
        w, frames = self.window, dense.shape[-1]
        if torch.compiler.is_exporting():
            positions = torch.arange(frames, device=dense.device)
            offsets = positions[None, :] - positions[:, None]  # (T, T): key j - query i
            zero = dense.new_zeros(())
            for r in range(2 * w + 1):
                dense = dense + torch.where(offsets == r - w, band[..., r : r + 1], zero)
            return dense
        for r in range(2 * w + 1):
            offset = r - w
            if abs(offset) >= frames:
                continue  # this diagonal is empty
            rows = slice(max(0, -offset), frames - max(0, offset))
            dense.diagonal(offset, dim1=-2, dim2=-1).add_(band[..., rows, r])
        return dense

    def _dense_to_band(self, dense: torch.Tensor) -> torch.Tensor:
        """``(..., T, T)`` -> ``(..., T, 2w+1)`` band ``[i, r] = dense[i, i + r - w]`` (0 outside)."""
        w = self.window
        frames = dense.shape[-1]
        padded = F.pad(dense, (w, w))
        rows = torch.arange(frames, device=dense.device)[:, None]
        columns = (rows + torch.arange(2 * w + 1, device=dense.device)).expand(*dense.shape[:-1], 2 * w + 1)
        return padded.gather(-1, columns)


class ConvFeedForward(nn.Module):
    """Conv(C -> ffn, k) ReLU dropout Conv(ffn -> C, k) on ``(B, T, C)``; padded frames are zeroed before each conv."""

    def __init__(self, channels: int, ffn: int, kernel: int, dropout: float):
        super().__init__()
        self.conv_in = nn.Conv1d(channels, ffn, kernel, padding=kernel // 2)
        self.conv_out = nn.Conv1d(ffn, channels, kernel, padding=kernel // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :]
        h = x.transpose(1, 2) * keep
        h = self.dropout(torch.relu(self.conv_in(h)))
        h = self.conv_out(h * keep) * keep
        return h.transpose(1, 2)


class PriorLayer(nn.Module):
    """Post-norm block: ``x = LN(x + drop(attn(x)))``; ``x = LN(x + drop(ffn(x)))``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.hidden
        self.attention = RelativeSelfAttention(hidden, config.prior_heads, config.prior_window, config.prior_dropout)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-4)
        self.feed_forward = ConvFeedForward(hidden, config.prior_ffn, config.prior_kernel, config.prior_dropout)
        self.feed_forward_norm = nn.LayerNorm(hidden, eps=1e-4)
        self.dropout = nn.Dropout(config.prior_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = apply_mask(x, mask)
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x, mask)))


class Prior(nn.Module):
    """Condition ``(B, T, hidden)`` -> coarse mel ``mu`` ``(B, T, n_mels)`` (normalised mel space); 0 on padding."""

    def __init__(self, config: ModelConfig, n_mels: int):
        super().__init__()
        self.layers = nn.ModuleList(PriorLayer(config) for _ in range(config.prior_layers))
        self.projection = nn.Linear(config.hidden, n_mels)  # the reference's 1x1 conv

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return apply_mask(self.projection(apply_mask(x, mask)), mask)


def prior_loss(mu: torch.Tensor, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The prior's loss of ``mu`` against the normalised ``mel`` ``(B, T, n_mels)`` on the valid frames of ``mask``.

    The reference's unit-variance Gaussian NLL ``0.5 (d^2 + ln 2 pi)``, averaged over the
    valid elements and divided once more by ``n_mels``.
    """
    nll = masked_mean(0.5 * ((mu - mel) ** 2 + math.log(2 * math.pi)), mask)
    return nll / mel.shape[-1]


__all__ = ["ConvFeedForward", "Prior", "PriorLayer", "RelativeSelfAttention", "prior_loss"]
