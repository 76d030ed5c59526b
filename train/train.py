"""Train the ComoSVC teacher (condition encoder + prior + EDM diffusion decoder).

    accelerate launch train/train.py --config configs/comosvc.yaml --data data/processed --out runs/teacher
    python train/train.py --config configs/tiny.yaml --data data/tiny --out runs/tiny-teacher   # CPU smoke run

Writes OUT/checkpoints/step-XXXXXXXX (crash-safe, the last train.keep_checkpoints
kept; continue with --resume), OUT/logs (TensorBoard: `tensorboard --logdir OUT/logs`),
OUT/config.yaml, and at the end the teacher in OUT/model (save_pretrained: weights,
config, singers.json, stats.json, model card), pushed to the Hub with --push_to_hub.
All logic lives in comosvc/; this file only wires it together.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from accelerate.utils import set_seed  # noqa: E402

from comosvc.models import ComoSVC  # noqa: E402
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
from comosvc.training.data import load_training_data  # noqa: E402
from comosvc.training.media import SampleLogger  # noqa: E402

args = build_parser(__doc__.splitlines()[0]).parse_args()
setup_logging()
show_user_errors_briefly()
cfg = load_run_config(args, "train")
tc = cfg.train
tc.mixed_precision = resolve_mixed_precision(args.mixed_precision, tc)
out = Path(args.out)
check_can_start(out, args.resume)

accelerator = make_accelerator(tc, out)
set_seed(tc.seed)  # the same initial weights on every process

# data: random crops mixing singers; singers.json and stats.json travel with the model
data = load_training_data(args.data, tc)

# model and optimisation
model = ComoSVC(cfg, singers=data.singers, stats=data.stats)
optimizer = build_optimizer(model.parameters(), tc)
plateau = build_plateau(optimizer, tc)
objective, optimizer, train_loader, val_loader = accelerator.prepare(
    Objective(model, "teacher_loss"), optimizer, data.train_loader, data.val_loader
)
accelerator.register_for_checkpointing(plateau)
state = resume_or_start(accelerator, out, args.resume, tc.seed)

if accelerator.is_main_process:
    save_run_config(cfg, out)
    print(f"teacher: {model.num_parameters()['total'] / 1e6:.2f}M parameters, {accelerator.num_processes} process(es), "
          f"{accelerator.device}, mixed precision {accelerator.mixed_precision}, step {state.step} -> {tc.max_steps}")
accelerator.init_trackers("teacher", config=tracker_config(cfg))

# mel pictures and audio of fixed validation clips at each validation
samples = SampleLogger(
    accelerator, cfg, data.stats, data.examples, data.example_datasets,
    sample_fn=lambda m, batch: m.sample(batch, sampler="teacher", steps=cfg.inference.teacher_steps).mel,
)
summary = train_loop(
    accelerator, objective, optimizer, plateau, train_loader, val_loader, tc, out, state,
    on_validate=lambda step: samples(step, accelerator.unwrap_model(objective).model),
    desc="teacher",
)

# the final teacher, in the inference format
if accelerator.is_main_process:
    teacher = accelerator.unwrap_model(objective).model
    teacher.training_steps = summary.state.step
    teacher.save_pretrained(out / "model")
    print(f"trained {summary.steps_run} steps ({summary.steps_per_second:.2f} steps/s); teacher saved to {out / 'model'}")
    if args.push_to_hub:
        url = teacher.push_to_hub(args.push_to_hub)
        print(f"pushed to {url}")
accelerator.end_training()
