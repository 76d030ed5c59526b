"""Seconds per distillation step of each variant, side by side: ``python -m comosvc.measure.distill_timing``.

    python -m comosvc.measure.distill_timing --threads 1 --repeats 10 \\
        --variant reference distill.teacher_regression=0 distill.teacher_solver=heun

Each variant is the quality check's config (:func:`comosvc.measure.quality.quality_config`) with
its settings; steps are interleaved round-robin so that a busy machine slows all alike.
"""

from __future__ import annotations

import torch


def step_seconds(variants: dict[str, list[str]], repeats: int = 20, steps: int = 5, settings=None) -> dict[str, float]:
    """Median seconds of one distillation step (loss, backward, AdamW, EMA) per variant, interleaved
    round-robin so that a busy machine slows all alike. ``variants``: ``{name: overrides}`` on the
    quality check's config (:func:`comosvc.measure.quality.quality_config`), a random teacher, a random
    batch of the quality check's size (``batch_size`` x ``crop_frames``)."""
    import dataclasses

    from comosvc.measure.quality import QualitySettings, quality_config
    from comosvc.measure.timer import interleave, medians, timed
    from comosvc.models.comosvc import ComoSVC
    from comosvc.models.consistency import ConsistencyDistiller

    settings = settings or QualitySettings()
    jobs = {}
    for name, overrides in variants.items():
        config = quality_config(dataclasses.replace(settings, overrides=list(settings.overrides) + list(overrides)))
        torch.manual_seed(settings.seed)
        distiller = ConsistencyDistiller(ComoSVC(config), config.distill).train()
        optimizer = torch.optim.AdamW(distiller.trainable_parameters(), lr=1e-4)
        batch = _random_batch(config, settings.batch_size, settings.crop_frames)

        def run(distiller=distiller, optimizer=optimizer, batch=batch) -> None:
            for _ in range(steps):
                distiller.loss(batch)["loss"].backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                distiller.update_ema()

        jobs[name] = timed(run)
    runs = interleave(jobs, repeats, desc="distillation step")
    return {name: medians(timings)["total"] / steps for name, timings in runs.items()}


def _random_batch(config, batch: int, frames: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "whisper": torch.randn(batch, frames, config.content.whisper_dim, generator=g),
        "contentvec": torch.randn(batch, frames, config.content.contentvec_dim, generator=g),
        "f0": 150 + 150 * torch.rand(batch, frames, generator=g),
        "energy": torch.rand(batch, frames, generator=g),
        "speaker": torch.zeros(batch, dtype=torch.long),
        "mel": torch.rand(batch, frames, config.audio.n_mels, generator=g) * 2 - 1,
        "mask": torch.ones(batch, frames, dtype=torch.bool),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m comosvc.measure.distill_timing --variant NAME SETTINGS... [--threads 1]``: seconds per
    distillation step of each variant (and the config's default), side by side."""
    import argparse

    from comosvc.measure import tables
    from comosvc.measure.quality import parse_variants

    parser = argparse.ArgumentParser(prog="python -m comosvc.measure.distill_timing", description=main.__doc__)
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME_OR_SETTING")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = parse_variants(args.variant)
    seconds = step_seconds(variants, repeats=args.repeats)
    base = seconds["default"]
    rows = [[name, " ".join(variants[name]) or "(defaults)", f"{s:.4f}", f"{s / base:.2f}"] for name, s in seconds.items()]
    print(tables.markdown_table(["variant", "settings", "s / step", "x default"], rows))
    return 0


__all__ = ["main", "step_seconds"]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
