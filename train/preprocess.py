"""Corpora -> cached training features. Thin wrapper over :mod:`comosvc.data.preprocess`.

    python train/preprocess.py --config configs/comosvc.yaml \
        --dataset m4singer=/data/m4singer --dataset vctk=/data/VCTK-Corpus-0.92 \
        --out data/processed [section.key=value ...]

Run ``python train/preprocess.py --help`` for the corpora and their layouts.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comosvc.data.preprocess import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
