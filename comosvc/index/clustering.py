"""A small k-means in torch: k-means++ seeding, then Lloyd iterations; seeded and deterministic.

    >>> centroids = kmeans(frames, k=2048, seed=0)     # frames (N, D) -> centroids (min(k, N), D)

Seeding runs k-means++ on a pool of at most ``init_pool_factor * k`` points drawn
from ``x`` (one pass over the pool per centroid; the Lloyd iterations that follow
use every point). The sums of a Lloyd step are a sequential index-add on the CPU
and one-hot matrix products on a GPU (not its atomic scatter-adds), so the result is
the same on every run of one device. Distances
are computed in chunks of ``chunk`` points: memory stays ``O(chunk * k)``.
"""

from __future__ import annotations

import torch


def _nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int) -> torch.Tensor:
    """Index ``(N,)`` of each row of ``x`` ``(N, D)``'s nearest row of ``centroids`` ``(K, D)`` (squared L2)."""
    c_norm = (centroids * centroids).sum(1)
    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        out[start : start + chunk] = (c_norm[None, :] - 2.0 * part @ centroids.T).argmin(1)
    return out


def _cluster_sums(x: torch.Tensor, assign: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sums (K, D), counts (K,))`` of the rows of ``x`` per cluster. On the CPU an index-add (sequential, so
    deterministic); elsewhere one-hot matrix products, as a GPU's index-add adds in no fixed order."""
    counts = torch.bincount(assign, minlength=k).to(x.dtype)
    if x.device.type == "cpu":
        return torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, assign, x), counts
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
    for start in range(0, len(x), chunk):
        onehot = torch.nn.functional.one_hot(assign[start : start + chunk], k).to(x.dtype)
        sums += onehot.T @ x[start : start + chunk]
    return sums, counts


def _kmeans_pp(pool: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: ``k`` rows of ``pool`` ``(P, D)``, each next one drawn with probability ∝ squared
    distance to the nearest one chosen so far. Random numbers come from the CPU ``generator``."""
    norms = (pool * pool).sum(1)

    def distances_to(i: int) -> torch.Tensor:  # squared, one matrix-vector product (a pass over the pool)
        return (norms - 2.0 * torch.mv(pool, pool[i]) + norms[i]).clamp_min(0.0)

    first = int(torch.randint(len(pool), (1,), generator=generator))
    chosen = [first]
    d2 = distances_to(first)
    d2[first] = 0.0
    for _ in range(1, k):
        total = d2.sum()
        if not total > 0:  # every point coincides with a chosen one: take the next unchosen rows
            taken = set(chosen)
            rest = [i for i in range(len(pool)) if i not in taken]
            chosen.extend(rest[: k - len(chosen)])
            break
        u = float(torch.rand((), generator=generator, dtype=torch.float64)) * float(total)
        pick = int(torch.searchsorted(d2.cumsum(0), torch.tensor([u], dtype=d2.dtype, device=d2.device)).clamp_max(len(pool) - 1))
        chosen.append(pick)
        d2 = torch.minimum(d2, distances_to(pick))
        d2[pick] = 0.0  # exactly: the expanded form leaves rounding that could pick a row twice
    return pool[torch.tensor(chosen, device=pool.device)].clone()


@torch.no_grad()
def kmeans(
    x: torch.Tensor,
    k: int,
    iterations: int = 10,
    seed: int = 0,
    init_pool_factor: int = 4,
    chunk: int = 4096,
) -> torch.Tensor:
    """``k`` centroids ``(min(k, N), D)`` float32 of the rows of ``x`` ``(N, D)``, on ``x``'s device.

    With ``N <= k`` the rows themselves are returned. A centroid that loses all its
    points in a Lloyd step stays where it was. Stops early once no assignment changes.
    """
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"kmeans needs a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"kmeans needs k >= 1, got {k}")
    x = x.float()
    if len(x) <= k:
        return x.clone()
    generator = torch.Generator().manual_seed(seed)
    pool_size = min(len(x), init_pool_factor * k)
    pool = x[torch.randperm(len(x), generator=generator)[:pool_size].to(x.device)] if pool_size < len(x) else x
    centroids = _kmeans_pp(pool, k, generator)
    assign = None
    for _ in range(iterations):
        new_assign = _nearest(x, centroids, chunk)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        sums, counts = _cluster_sums(x, assign, k, chunk)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


__all__ = ["kmeans"]
