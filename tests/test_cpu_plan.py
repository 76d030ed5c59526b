"""The CPU plan: resolved once from the config and the CPU's instructions, applied by building new
modules (the networks passed in never change), shown in the pipeline's repr; the vocoder's worker
threads leave every other thread's torch thread count as it was."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from comosvc.bf16_matmuls import (
    Bf16Conv1d,
    Bf16Linear,
    MIN_BF16_REDUCTION,
    reduction_size,
    uses_bf16_matmuls,
    with_bf16_matmuls,
)
from comosvc.config import ConfigError, InferenceConfig, load_config
from comosvc.cpu_plan import CpuPlan, CpuPlanError, bf16_instructions, cpu_flags, single_thread_workers
from comosvc.pipeline import ConversionPipeline

from conftest import TINY_CONFIG
from test_precision import model_dirs, networks, parameter_dtypes, phrase, small_bigvgan  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})  # e.g. AMD EPYC (Zen 4): no AMX
NO_BF16 = frozenset({"avx2", "fma"})


# --------------------------------------------------------------------------- resolving the plan


@pytest.mark.parametrize(
    ("flags", "matmul", "instructions"),
    [(AMX, "bfloat16", "AMX"), (AVX512_BF16, "bfloat16", "AVX512-BF16"), (NO_BF16, "float32", None), (None, "float32", None)],
)
def test_auto_takes_bfloat16_products_wherever_the_cpu_has_bf16_matrix_instructions(flags, matmul, instructions):
    plan = CpuPlan.resolve(InferenceConfig(), "cpu", torch.float32, flags=flags)
    assert (plan.matmul, plan.instructions, plan.bf16_matmuls) == (matmul, instructions, matmul == "bfloat16")


def test_explicit_settings_and_what_is_refused():
    asked = InferenceConfig(cpu_matmul_precision="bfloat16")
    assert CpuPlan.resolve(asked, "cpu", flags=AVX512_BF16).bf16_matmuls
    assert CpuPlan.resolve(asked, "cpu", flags=None).bf16_matmuls  # flags unknown (not Linux): as asked
    with pytest.raises(CpuPlanError, match="no bfloat16 matrix instructions.*float32"):
        CpuPlan.resolve(asked, "cpu", flags=NO_BF16)
    assert not CpuPlan.resolve(InferenceConfig(cpu_matmul_precision="float32"), "cpu", flags=AMX).bf16_matmuls
    assert not CpuPlan.resolve(asked, "cpu", torch.bfloat16, flags=AMX).bf16_matmuls  # only float32 networks
    on_cuda = CpuPlan.resolve(asked, "cuda", torch.float16, flags=AMX)
    assert not on_cuda.bf16_matmuls and on_cuda.vocoder_workers == 1 and str(on_cuda) == "cuda: float16 networks"
    with pytest.raises(CpuPlanError, match="vocoder_workers"):
        CpuPlan.resolve(InferenceConfig(vocoder_workers=-1), "cpu", flags=AMX)
    with pytest.raises(ConfigError, match="cpu_matmul_precision"):
        load_config(TINY_CONFIG, overrides=["inference.cpu_matmul_precision=int8"])


def test_vocoder_workers_zero_is_resolved_once_to_the_thread_count():
    plan = CpuPlan.resolve(InferenceConfig(vocoder_workers=0), "cpu", flags=NO_BF16)
    assert plan.vocoder_workers == torch.get_num_threads() == 1  # the one_thread fixture
    assert CpuPlan.resolve(InferenceConfig(vocoder_workers=3), "cpu", flags=NO_BF16).vocoder_workers == 3
    assert str(CpuPlan("cpu", "bfloat16", "AMX", vocoder_workers=2)) == (
        "cpu: bfloat16 matrix products (AMX), vocoder on 2 worker threads"
    )


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert bf16_instructions(cpu_flags(info)) == "AVX512-BF16"
    assert cpu_flags(tmp_path / "missing") is None and bf16_instructions(None) is None


# --------------------------------------------------------------------------- the bf16 layers


def _layers() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(8, 16, 3, padding=1), torch.nn.ConvTranspose1d(16, 8, 4, 2, 1), torch.nn.Linear(12, 5),
        torch.nn.Linear(5, 3),
    )


def test_bf16_layers_are_new_modules_and_the_original_is_untouched():
    layers = _layers()
    x = torch.randn(2, 8, 6)
    exact = layers(x)
    assert with_bf16_matmuls(layers) is layers  # every layer here sums under MIN_BF16_REDUCTION products
    fast = with_bf16_matmuls(layers, min_reduction=1)
    assert fast is not layers and uses_bf16_matmuls(fast) and not uses_bf16_matmuls(layers)
    assert [type(m) for m in layers] == [torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear, torch.nn.Linear]
    assert isinstance(fast[0], Bf16Conv1d) and isinstance(fast[2], Bf16Linear)
    # the float32 parameters are shared, not copied; the state dict is the same
    assert all(a is b for a, b in zip(fast.parameters(), layers.parameters()))
    assert list(fast.state_dict()) == list(layers.state_dict()) and parameter_dtypes(fast) == {torch.float32}
    approx = fast(x)
    assert approx.dtype == torch.float32 and torch.equal(layers(x), exact)
    error = (approx - exact).abs().max() / exact.abs().max()
    assert 0 < error < 2e-2  # bfloat16 rounding of inputs and weights: close, not the same
    assert reduction_size(layers[0]) == 8 * 3 and reduction_size(layers[2]) == 12


def test_only_large_plain_layers_switch_and_the_waveform_layer_stays_float32():
    vocoder = small_bigvgan()
    fast = with_bf16_matmuls(vocoder)
    assert type(fast.generator.conv_post) is torch.nn.Conv1d  # 32 channels x 7 taps: it would round the waveform
    switched = [m for m in fast.modules() if uses_bf16_matmuls(m) and not list(m.children())]
    assert switched and all(reduction_size(m) >= MIN_BF16_REDUCTION for m in switched)
    assert not uses_bf16_matmuls(vocoder)

    class Custom(torch.nn.Linear):  # a subclass may compute differently: left alone
        pass

    assert with_bf16_matmuls(torch.nn.Sequential(Custom(600, 4)))[0].__class__ is Custom


# --------------------------------------------------------------------------- in the pipeline


def _pipeline(model_dirs, tiny_overrides, plan=None, features=None) -> ConversionPipeline:
    """A student pipeline; with ``features``, one that shares those content encoders (as the bench's do)."""
    base = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=small_bigvgan(), device="cpu", overrides=tiny_overrides)
    if plan is None and features is None:
        return base
    return ConversionPipeline(
        base.model, features or base.features, base.vocoder, config=base.config, device="cpu", plan=plan
    )


def test_two_pipelines_over_shared_encoders_keep_their_own_numerics(model_dirs, tiny_overrides, phrase):
    exact = _pipeline(model_dirs, tiny_overrides, plan=CpuPlan("cpu"))
    before = exact(phrase, "synth_alto", sampler="student", steps=1, seed=0)
    # the tiny networks' layers are small: every layer of 32+ products switches
    bf16 = CpuPlan("cpu", "bfloat16", min_bf16_reduction=32)
    fast = _pipeline(model_dirs, tiny_overrides, plan=bf16, features=exact.features)
    for name, module in networks(fast).items():
        assert uses_bf16_matmuls(module), name
        assert parameter_dtypes(module) == {torch.float32}, name
    for name, module in networks(exact).items():
        assert not uses_bf16_matmuls(module), name
    assert uses_bf16_matmuls(fast.teacher())  # the lazily loaded teacher too
    after = exact(phrase, "synth_alto", sampler="student", steps=1, seed=0)
    np.testing.assert_array_equal(after.audio, before.audio)  # the second pipeline changed nothing of the first
    approx = fast(phrase, "synth_alto", sampler="student", steps=1, seed=0)
    error = np.abs(approx.mel - before.mel).mean() / np.abs(before.mel).mean()
    assert 0 < error < 0.02, error


def test_the_plan_is_in_the_repr(model_dirs, tiny_overrides):
    pipe = _pipeline(model_dirs, tiny_overrides, plan=CpuPlan("cpu", "bfloat16", "AVX512-BF16", vocoder_workers=2))
    text = repr(pipe)
    assert "student" in text and "bfloat16 matrix products (AVX512-BF16)" in text and "2 worker threads" in text
    assert "float32 matrix products" in repr(_pipeline(model_dirs, tiny_overrides, plan=CpuPlan("cpu")))


# --------------------------------------------------------------------------- threads


def _thread_count_in_a_new_thread() -> int:
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_single_thread_workers_leave_the_caller_and_later_threads_as_they_were():
    with_threads = 2
    torch.set_num_threads(with_threads)  # restored by the one_thread fixture
    pool = single_thread_workers(2, name="test")
    assert list(pool.map(lambda _: torch.get_num_threads(), range(4))) == [1, 1, 1, 1]
    assert torch.get_num_threads() == with_threads
    assert _thread_count_in_a_new_thread() == with_threads
    pool.shutdown()


def test_a_conversion_beside_a_live_stream_is_unchanged_and_threads_stay(model_dirs, tiny_overrides, phrase):
    from comosvc.streaming import StreamingConverter

    torch.set_num_threads(2)  # restored by the one_thread fixture
    pipe = _pipeline(model_dirs, tiny_overrides, plan=CpuPlan("cpu", vocoder_workers=2, vocoder_overlap_frames=8))
    assert pipe.plan.vocoder_workers == 2 and type(pipe.vocoder).__name__ == "ParallelVocoder"
    alone = pipe(phrase, "synth_alto", sampler="student", steps=1, seed=0).audio

    def stream() -> np.ndarray:
        live = StreamingConverter(pipe, "synth_alto", block_seconds=0.25, seed=0)
        pieces = [live.push(phrase[i : i + 2400]) for i in range(0, len(phrase), 2400)]
        return np.concatenate([*pieces, live.flush()])

    streamed_alone = stream()
    results: dict[str, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda: results.__setitem__("stream", stream())),
        threading.Thread(target=lambda: results.__setitem__("offline", pipe(phrase, "synth_alto", sampler="student", steps=1, seed=0).audio)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(results["offline"], alone, atol=1e-6)
    np.testing.assert_allclose(results["stream"], streamed_alone, atol=1e-6)
    assert torch.get_num_threads() == 2 and _thread_count_in_a_new_thread() == 2


def test_a_planned_network_stays_planned_when_moved_cast_or_built_into_another_pipeline(model_dirs, tiny_overrides, phrase):
    layers = with_bf16_matmuls(_layers(), min_reduction=1)
    x = torch.randn(2, 8, 6)
    before = layers(x)
    layers.to(torch.float32).to("cpu")  # Module.to casts every floating buffer: the copies stay bfloat16
    assert layers[0].weight_bf16.dtype == torch.bfloat16 and torch.equal(layers(x), before)
    # a pipeline built from another's planned networks (as the bench builds its teacher and student)
    plan = CpuPlan("cpu", "bfloat16", min_bf16_reduction=32)
    first = _pipeline(model_dirs, tiny_overrides, plan=plan)
    second = ConversionPipeline(first.model, first.features, first.vocoder, config=first.config, device="cpu", plan=plan)
    a = first(phrase, "synth_alto", sampler="student", steps=1, seed=0)
    b = second(phrase, "synth_alto", sampler="student", steps=1, seed=0)
    np.testing.assert_array_equal(a.audio, b.audio)
