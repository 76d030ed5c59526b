"""Train the ComoSVC teacher (condition encoder + prior + EDM diffusion decoder).

    accelerate launch train/train.py --config configs/comosvc.yaml --data data/processed --out runs/teacher
    python train/train.py --config configs/tiny.yaml --data data/tiny --out runs/tiny-teacher   # CPU smoke run

Writes OUT/checkpoints/step-XXXXXXXX (crash-safe, the last train.keep_checkpoints
kept; continue with --resume), OUT/logs (TensorBoard: `tensorboard --logdir OUT/logs`),
OUT/config.yaml, and at the end the teacher in OUT/model (save_pretrained: weights,
config, singers.json, stats.json, model card, and the singers' timbre index unless
--no_index), pushed to the Hub with --push_to_hub.
All logic lives in comosvc/; this file only wires it together.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from comosvc.index.build import build_index_at_end_of_training  # noqa: E402
from comosvc.models import ComoSVC  # noqa: E402
from comosvc.training import Objective, prepare_training  # noqa: E402
from comosvc.training.args import start_script  # noqa: E402
from comosvc.training.data import load_training_data  # noqa: E402
from comosvc.training.media import SampleLogger  # noqa: E402

# config: the file, the overrides and the flags of the command line
args, cfg = start_script(__doc__, "train", index_arg=True)
tc = cfg.train

# data: random crops mixing singers; singers.json and stats.json travel with the model
data = load_training_data(args.data, tc)

# model, then accelerator, AdamW, plateau LR, checkpoints (--resume) and trackers
model = ComoSVC(cfg, singers=data.singers, stats=data.stats)
run = prepare_training(
    Objective(model, "teacher_loss"), tc, args.out, data.train_loader, data.val_loader,
    resume=args.resume, project="teacher", run_config=cfg,
)
if run.is_main_process:
    print(f"teacher: {model.num_parameters()['total'] / 1e6:.2f}M parameters, {run.describe()}")

# mel pictures and audio of fixed validation clips at each validation
samples = SampleLogger.of_data(
    run.accelerator, cfg, data,
    sample_fn=lambda m, batch: m.sample(batch, sampler="teacher", steps=cfg.inference.teacher_steps).mel,
)
summary = run.fit(on_validate=lambda step: samples(step, run.model), desc="teacher")

# the final teacher, in the inference format
if run.is_main_process:
    teacher = run.final_model()  # the EMA weights (train.ema_halflife_steps)
    teacher.training_steps = summary.state.step
    if not args.no_index:  # the singers' timbre index (python -m comosvc index), saved with the model
        teacher.index = build_index_at_end_of_training(args.data, device=run.accelerator.device)
    folder = run.save_model(teacher, push_to_hub=args.push_to_hub)
    print(f"trained {summary.steps_run} steps ({summary.steps_per_second:.2f} steps/s); teacher saved to {folder}")
run.end()
