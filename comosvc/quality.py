"""``python -m comosvc.quality``: the distillation quality check (:mod:`comosvc.measure.quality`)."""

from comosvc.measure.quality import main

if __name__ == "__main__":
    raise SystemExit(main())
