"""Distil a trained ComoSVC teacher into a one-step consistency student.

    accelerate launch train/distill.py --config configs/comosvc.yaml --teacher runs/teacher/model \
        --data data/processed --out runs/student
    python train/distill.py --config configs/tiny.yaml --teacher runs/tiny-teacher/model \
        --data data/tiny --out runs/tiny-student                                    # CPU smoke run

The teacher (a folder or a Hub id) is loaded with ComoSVC.from_pretrained; its
condition encoder, prior and denoiser are frozen, the student and its EMA target
start as copies of the teacher's denoiser, and the EMA moves after each optimiser
step only. Settings come from the config's `distill` section; model sizes and the
EDM/consistency constants come from the teacher. Writes OUT/checkpoints (crash-safe,
--resume), OUT/logs (TensorBoard), OUT/config.yaml and at the end the inference
export in OUT/model: condition encoder + prior + one denoiser, singers.json,
stats.json and the model card (pushed to the Hub with --push_to_hub).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from accelerate.utils import set_seed  # noqa: E402

from comosvc.models import ComoSVC, ConsistencyDistiller  # noqa: E402
from comosvc.training import (  # noqa: E402
    Objective,
    build_optimizer,
    build_plateau,
    check_can_start,
    make_accelerator,
    resolve_mixed_precision,
    resume_or_start,
    train_loop,
)
from comosvc.training.args import (  # noqa: E402
    build_parser,
    load_run_config,
    save_run_config,
    setup_logging,
    show_user_errors_briefly,
    tracker_config,
)
from comosvc.training.data import check_teacher_matches, load_training_data  # noqa: E402
from comosvc.training.media import SampleLogger  # noqa: E402

args = build_parser(__doc__.splitlines()[0], teacher_arg=True).parse_args()
setup_logging()
show_user_errors_briefly()
cfg = load_run_config(args, "distill")
tc = cfg.distill
tc.mixed_precision = resolve_mixed_precision(args.mixed_precision, tc)
out = Path(args.out)
check_can_start(out, args.resume)

accelerator = make_accelerator(tc, out)
set_seed(tc.seed)

# data, checked against the teacher's singers (ids must mean the same singers)
data = load_training_data(args.data, tc)
teacher = ComoSVC.from_pretrained(args.teacher)
check_teacher_matches(teacher, cfg, data)

# frozen teacher; the student (trainable) and its EMA target start as its denoiser
distiller = ConsistencyDistiller(teacher)
optimizer = build_optimizer(distiller.trainable_parameters(), tc)
plateau = build_plateau(optimizer, tc)
objective, optimizer, train_loader, val_loader = accelerator.prepare(
    Objective(distiller, "loss"), optimizer, data.train_loader, data.val_loader
)
accelerator.register_for_checkpointing(plateau)
state = resume_or_start(accelerator, out, args.resume, tc.seed)  # the EMA target is part of the model state

if accelerator.is_main_process:
    save_run_config(cfg, out)
    print(f"distilling {args.teacher}: {accelerator.num_processes} process(es), {accelerator.device}, "
          f"mixed precision {accelerator.mixed_precision}, step {state.step} -> {tc.max_steps}")
accelerator.init_trackers("distill", config=tracker_config(cfg))


def unwrapped() -> ConsistencyDistiller:
    return accelerator.unwrap_model(objective).model


# the one-step student (EMA target) on fixed validation clips at each validation
samples = SampleLogger(
    accelerator, teacher.config, data.stats, data.examples, data.example_datasets,
    sample_fn=lambda d, batch: d.export().sample(batch, sampler="student", steps=1).mel,
)
summary = train_loop(
    accelerator, objective, optimizer, plateau, train_loader, val_loader, tc, out, state,
    after_update=lambda step: unwrapped().update_ema(),  # training steps only, never validation
    on_validate=lambda step: samples(step, unwrapped()),
    desc="distill",
)

# the inference export: condition encoder + prior + one denoiser, with singers, stats and card
if accelerator.is_main_process:
    student = unwrapped().export(distilled_from=args.teacher, distillation_steps=summary.state.step)
    student.save_pretrained(out / "model")
    print(f"distilled {summary.steps_run} steps ({summary.steps_per_second:.2f} steps/s); "
          f"student saved to {out / 'model'}")
    if args.push_to_hub:
        url = student.push_to_hub(args.push_to_hub)
        print(f"pushed to {url}")
accelerator.end_training()
