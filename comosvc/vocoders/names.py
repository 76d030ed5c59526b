"""The vocoder names users type that the code must also know, torch-free (the CLI spells them in ``--help``)."""

GRIFFINLIM = "griffinlim"  # the Griffin-Lim family: no weights, the low-quality fallback
