"""Measurement, apart from what a conversion or a training run executes.

Nothing in the runtime (``comosvc.pipeline``, ``models``, ``vocoders``, ``features``,
``streaming``, ``training``) imports this package; it drives them through their public
API (the pipeline's ``around_stage`` hook for per-stage counts, never patched methods).

- :mod:`~comosvc.measure.bench`: ``python -m comosvc bench``, speed per stage and the distance to the GEMM peak;
- :mod:`~comosvc.measure.quality`: ``python -m comosvc.quality``, teacher and student quality on synthetic singing;
- :mod:`~comosvc.measure.vocoder_bench`: ``python -m comosvc.measure.vocoder_bench``, the vocoders' speed;
- :mod:`~comosvc.measure.feature_timing`: ``python -m comosvc.measure.feature_timing``, the content features' speed;
- :mod:`~comosvc.measure.streaming`: a streamed conversion against the offline one;
- :mod:`~comosvc.measure.distillation`: where a student is trained well (its distance to the teacher by sigma);
- :mod:`~comosvc.measure.distill_timing`: ``python -m comosvc.measure.distill_timing``, seconds per distillation step;
- :mod:`~comosvc.measure.index_bench`: ``python -m comosvc.measure.index_bench``, what the timbre index costs;
- :mod:`~comosvc.measure.voices`: ``python -m comosvc.measure.voices``, whose voice a conversion has after a fine-tune or with the timbre index;
- :mod:`~comosvc.measure.timer`: repeats, interleaving, medians (on :mod:`comosvc.pipeline.clock`);
- :mod:`~comosvc.measure.peak`: FLOP counts and the GEMM peak;
- :mod:`~comosvc.measure.tables`: :func:`markdown_table`;
- :mod:`~comosvc.measure.stand_ins`: :func:`copy_model`, stand-in features and vocoder.

Figures live in docs/benchmarks.md, each with the command that produced it.
"""

from comosvc.measure.stand_ins import copy_model
from comosvc.measure.tables import markdown_table
from comosvc.measure.timer import Seconds, Timer, interleave, medians, time_call

__all__ = ["Seconds", "Timer", "copy_model", "interleave", "markdown_table", "medians", "time_call"]
