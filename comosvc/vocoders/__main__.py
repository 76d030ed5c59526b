"""``python -m comosvc.vocoders --bench``: time the vocoders (see :mod:`comosvc.vocoders.bench`)."""

from comosvc.vocoders.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
