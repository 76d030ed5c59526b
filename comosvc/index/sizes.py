"""How big a singer's timbre index is (plain numbers: no torch, so the command line's help stays quick).

At the mel frame rate (93.75 frames/s) a minute of training audio is 5625 frames:
1406 index vectors; the cap of 2048 is reached at 8192 frames (87 s). Stored
float16, a vector of the default model (Whisper 1024 + ContentVec 256 dims) takes
2.5 KiB, so a singer's index is at most 5 MiB (3.4 MiB per minute below the cap).
"""

MAX_SIZE = 2048  # index vectors per singer, at most
FRAMES_PER_VECTOR = 4  # below the cap: one index vector per this many training frames
MAX_POINTS = 32768  # frames per singer that the k-means sees, at most (about 5.8 minutes of audio)


def index_size(frames: int, max_size: int = MAX_SIZE, frames_per_vector: int = FRAMES_PER_VECTOR) -> int:
    """Index vectors kept for a singer with ``frames`` training frames: ``min(max_size, frames // frames_per_vector)``,
    at least 1."""
    return max(1, min(max_size, frames // frames_per_vector))


__all__ = ["FRAMES_PER_VECTOR", "MAX_POINTS", "MAX_SIZE", "index_size"]
