"""Fine-tune a trained ComoSVC teacher and student on a new voice: bring a voice, get a one-step model of it.

    accelerate launch train/finetune.py --teacher user/comosvc-teacher --student user/comosvc-student \
        --dataset generic:alice=recordings/ --out runs/alice
    python train/finetune.py --teacher runs/tiny-teacher/model --dataset generic:alice=recordings/ \
        --out runs/tiny-alice --teacher_steps 40 --distill_steps 20          # CPU smoke run

recordings/ holds one folder per singer (recordings/<singer>/**/*.wav|flac|mp3|ogg); each
becomes the singer "alice_<singer>" in the base model's singer table. The audio is
prepared into OUT/data with the base teacher's settings and content encoders; the
teacher is fine-tuned from the base weights into OUT/teacher (finetune.train_parts; a
new singer's embedding starts as finetune.start_embedding says), and the student is
distilled from it into OUT/student, starting from --student's denoiser (or the
teacher's). Each phase writes crash-safe checkpoints (continue with --resume),
TensorBoard logs (`tensorboard --logdir OUT`) and config.yaml; at the end
OUT/teacher/model and OUT/student/model, pushed as REPO-teacher and REPO-student with
--push_to_hub REPO. Settings: the config's finetune section (configs/comosvc.yaml).
Bad input is refused with one line before any training. All logic lives in
comosvc/training/finetune.py; this file only wires it together.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from accelerate import PartialState  # noqa: E402

from comosvc.training.args import setup_logging, show_user_errors_briefly  # noqa: E402
from comosvc.training.finetune import build_parser, finetune  # noqa: E402

args = build_parser(__doc__.splitlines()[0]).parse_args()
setup_logging()
show_user_errors_briefly()
result = finetune(
    args.teacher, args.out, datasets=args.dataset or (), data=args.data, student=args.student,
    teacher_steps=args.teacher_steps, distill_steps=args.distill_steps, continue_singer=args.continue_singer,
    push_to_hub=args.push_to_hub, resume=args.resume, overrides=args.overrides,
    mixed_precision=args.mixed_precision, device=args.device,
)
if PartialState().is_main_process:
    print(f"{', '.join(result.singers)}: {result.minutes:.1f} min of audio; convert with {result.student} (one step)")
