"""ParallelVocoder: overlapping segments on worker threads give the one-piece waveform, at the exact length.

Small generators shaped like BigVGAN v2 (upsampling 4-4-2-2-2-2) and v1 base (8-8-2-2),
with their convolution weights scaled up 5x from the N(0, 0.01) init so the network has
the gain of a trained one (at the init scale the output is ~1e-5 and any join would look
exact). Measured on these (max |parallel - one piece| over the peak, 300 frames, 3
segments): overlap 8 frames: 6e-2 (v2) / 7e-3 (v1); 16: 3e-3 / 9e-7; 24: 1e-5 / 9e-7;
32 (the default): 7e-7 / 9e-7, i.e. float rounding. The tolerance below, 1e-5 of the
peak, is ten times the rounding.
"""

from __future__ import annotations

import pytest
import torch

from comosvc.cpu_plan import CpuPlan
from comosvc.measure.peak import torch_threads
from comosvc.vocoders import GRIFFINLIM, random_vocoder
from comosvc.vocoders.bigvgan import _AMP_24K, BigVGANConfig, BigVGANGenerator, BigVGANVocoder
from comosvc.vocoders.parallel import CompiledVocoder, ParallelVocoder, prepare_vocoder, segment_bounds

TOLERANCE = 1e-5  # of the peak: ten times the float rounding measured with enough overlap

SHAPES = {
    "v2-like": dict(upsample_rates=[4, 4, 2, 2, 2, 2], upsample_kernel_sizes=[8, 8, 4, 4, 4, 4],
                    upsample_initial_channel=128, use_tanh_at_final=False, use_bias_at_final=False, fmax=None),
    "v1-like": dict(upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=64),
}


def _vocoder(shape: str) -> BigVGANVocoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vocoder = BigVGANVocoder(BigVGANGenerator(BigVGANConfig(**SHAPES[shape], **_AMP_24K))).eval()
    with torch.no_grad():
        for p in vocoder.parameters():
            if p.ndim == 3:  # convolution weights
                p.mul_(5.0)
    return vocoder


def _mel(batch: int, frames: int) -> torch.Tensor:
    return torch.randn(batch, frames, 100, generator=torch.Generator().manual_seed(1)) - 3.0


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def v2_like():
    return _vocoder("v2-like")


@pytest.mark.parametrize("shape", ["v2-like", "v1-like"])
def test_parallel_equals_one_piece_with_the_default_overlap(shape, v2_like):
    vocoder = v2_like if shape == "v2-like" else _vocoder(shape)
    mel = _mel(1, 300)
    whole = vocoder(mel)
    parallel = ParallelVocoder(vocoder, workers=3)  # default overlap, 3 segments of 100 frames
    assert len(parallel.plan(300)) == 3
    out = parallel(mel)
    assert out.shape == whole.shape == (1, 300 * 256)
    assert _relative_error(out, whole) < TOLERANCE


def test_too_little_overlap_differs_only_at_the_joins(v2_like):
    mel = _mel(1, 300)
    whole = v2_like(mel)
    parallel = ParallelVocoder(v2_like, workers=3, overlap_frames=8)
    out = parallel(mel)
    near = torch.zeros(300 * 256, dtype=torch.bool)
    for start, _ in parallel.plan(300)[1:]:
        near[(start - 40) * 256 : (start + 40) * 256] = True  # the v2 shape's receptive field is < 32 frames
    assert _relative_error(out[:, near], whole[:, near]) > 1e-3  # the joins show (so the test above can fail)
    assert _relative_error(out[:, ~near], whole[:, ~near]) < TOLERANCE  # away from them: one-piece output


def test_exact_length_for_any_frames_and_batch(v2_like):
    for frames in (1, 40, 97, 131):
        mel = _mel(2, frames)
        out = ParallelVocoder(v2_like, workers=2, overlap_frames=16, segment_frames=30)(mel)
        assert out.shape == (2, frames * 256) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
    assert ParallelVocoder(v2_like, workers=2, overlap_frames=16).plan(20) == [(0, 20)]  # too short to split
    assert ParallelVocoder(v2_like, workers=2).plan(2) == [(0, 2)]


def test_segment_bounds_cover_the_frames():
    assert segment_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert segment_bounds(2, 5) == [(0, 1), (1, 2)]


def test_threads_are_left_as_they_were_and_grad_is_off(v2_like):
    with torch_threads(2):
        parallel = ParallelVocoder(v2_like, workers=2, overlap_frames=16)
        assert torch.get_num_threads() == 2  # building the workers leaves the caller's count
        out = parallel(_mel(1, 80).requires_grad_())
        assert torch.get_num_threads() == 2 and not out.requires_grad


def test_prepare_vocoder_follows_the_plan(v2_like):
    assert prepare_vocoder(v2_like, CpuPlan("cpu", vocoder_workers=1)) is v2_like  # one piece, no compile
    wrapped = prepare_vocoder(v2_like, CpuPlan("cpu", vocoder_workers=2, vocoder_overlap_frames=24))
    assert isinstance(wrapped, ParallelVocoder) and wrapped.workers == 2 and wrapped.overlap_frames == 24
    assert wrapped.name == v2_like.name and wrapped.hop_length == 256 and wrapped.inner is v2_like
    assert len(wrapped.plan(300)) == 2
    assert prepare_vocoder(v2_like, CpuPlan("cuda", "float16", vocoder_workers=2)) is v2_like  # one piece on a GPU
    compiled = prepare_vocoder(v2_like, CpuPlan("cpu", compile=True))
    assert isinstance(compiled, CompiledVocoder) and compiled.inner is v2_like and "vocode" not in vars(v2_like)
    griffinlim = random_vocoder(GRIFFINLIM)
    assert prepare_vocoder(griffinlim, CpuPlan("cpu", vocoder_workers=2)) is griffinlim  # global phase: one piece
    with pytest.raises(ValueError, match="workers"):
        ParallelVocoder(v2_like, workers=0)
    with pytest.raises(ValueError, match="overlap"):
        ParallelVocoder(v2_like, overlap_frames=0)


def test_pipeline_uses_the_parallel_vocoder():
    from comosvc.config import load_config
    from comosvc.pipeline import ConversionPipeline
    from tests.conftest import TINY_CONFIG

    config = load_config(
        TINY_CONFIG,
        overrides=["content.whisper_dim=64", "content.contentvec_layer=2", "inference.vocoder_workers=2"],
    )
    pipe = ConversionPipeline.from_config(config, vocoder="nvidia/bigvgan_base_24khz_100band", device="cpu")
    assert isinstance(pipe.vocoder, ParallelVocoder) and pipe.vocoder_name.startswith("nvidia/bigvgan_base")
    mel = torch.full((120, 100), -5.0)
    assert pipe.vocode(mel).shape == (120 * 256,)
