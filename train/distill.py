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
stats.json, the model card and the teacher's timbre index if it has one (pushed to
the Hub with --push_to_hub).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from comosvc.models import ComoSVC, ConsistencyDistiller  # noqa: E402
from comosvc.training import Objective, prepare_training  # noqa: E402
from comosvc.training.args import start_script  # noqa: E402
from comosvc.training.data import check_teacher_matches, load_training_data  # noqa: E402
from comosvc.training.media import SampleLogger  # noqa: E402

# config: the file, the overrides and the flags of the command line
args, cfg = start_script(__doc__, "distill", teacher_arg=True)
tc = cfg.distill

# data, checked against the teacher's singers (ids must mean the same singers)
data = load_training_data(args.data, tc)
teacher = ComoSVC.from_pretrained(args.teacher)
check_teacher_matches(teacher, cfg, data)

# frozen teacher; the student (trainable) and its EMA target start as its denoiser.
# A resume restores the EMA target too: it is part of the distiller's state.
distiller = ConsistencyDistiller(teacher, tc)
run = prepare_training(
    Objective(distiller, "loss"), tc, args.out, data.train_loader, data.val_loader,
    parameters=distiller.trainable_parameters(), resume=args.resume, project="distill", run_config=cfg,
)
if run.is_main_process:
    print(f"distilling {args.teacher}: {run.describe()}")

# the one-step student (EMA target) on fixed validation clips at each validation
samples = SampleLogger.of_data(
    run.accelerator, teacher.config, data,
    sample_fn=lambda d, batch: d.export().sample(batch, sampler="student", steps=1).mel,
)
summary = run.fit(
    after_update=lambda step: run.model.update_ema(),  # training steps only, never validation
    on_validate=lambda step: samples(step, run.model),
    desc="distill",
)

# the inference export: condition encoder + prior + one denoiser, with singers, stats and card
if run.is_main_process:
    student = run.final_model().export(distilled_from=args.teacher, distillation_steps=summary.state.step)
    student.index = teacher.index  # the singers' content vectors do not change with the denoiser
    folder = run.save_model(student, push_to_hub=args.push_to_hub)
    print(f"distilled {summary.steps_run} steps ({summary.steps_per_second:.2f} steps/s); student saved to {folder}")
run.end()
