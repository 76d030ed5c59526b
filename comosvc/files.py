"""Names of the files ComoSVC writes and reads, each defined here once.

A model folder (:meth:`comosvc.models.ComoSVC.save_pretrained`) holds
:data:`MODEL_CONFIG_FILE`, :data:`WEIGHTS_FILE`, :data:`SINGERS_FILE`,
:data:`STATS_FILE` and :data:`CARD_FILE`, and :data:`INDEX_FILE` once a timbre index is
built (``python -m comosvc index``). A processed-data folder
(``train/preprocess.py``) and a training run's output folder hold the run's
effective config as YAML, :data:`RUN_CONFIG_FILE`, next to the same singer table
and stats files.
"""

MODEL_CONFIG_FILE = "config.json"  # model folder: {"config": ComoSVCConfig.to_dict(), "distilled": ..., ...}
RUN_CONFIG_FILE = "config.yaml"  # processed data / training run: the config that was used
WEIGHTS_FILE = "model.safetensors"
SINGERS_FILE = "singers.json"  # {"<dataset>_<singer>": id}
STATS_FILE = "stats.json"  # mel min/max per dataset, F0 stats and durations per singer
CARD_FILE = "README.md"  # the model card
INDEX_FILE = "index.safetensors"  # the timbre index (comosvc.index): per-singer content vectors

__all__ = ["CARD_FILE", "INDEX_FILE", "MODEL_CONFIG_FILE", "RUN_CONFIG_FILE", "SINGERS_FILE", "STATS_FILE", "WEIGHTS_FILE"]
