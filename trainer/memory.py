"""How much memory training takes, and keeping in-batch-negative training within a CPU's.

MNRL keeps the autograd graph of every text of a step at once: batch × texts per row × tokens. On a
CPU that is the machine's RAM, shared with everything else: the recipe's default step (32 rows × 3
texts × 256 tokens, MiniLM, fp32) peaked at 8.9 GB. GradCache (sentence-transformers'
CachedMultipleNegativesRankingLoss) computes the same loss in mini-batches: embed everything
without a graph, take the loss's gradient with respect to the embeddings, then re-embed one
mini-batch at a time with its graph and backpropagate it. The gradients are MNRL's (only the dropout
masks are drawn in another order); memory is one mini-batch's, for one more forward pass of compute.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

# Tokens embedded with their graph at once, above which MNRL on a CPU switches to GradCache. MiniLM
# keeps ~0.3 MB of activations per token in fp32 (a 12-layer base twice that): ~1.3 GB at this size.
CPU_TOKENS_WITH_GRAPH = 4096
# loss 'cached-mnrl' without --mini-batch-size (the GPU default it always had).
CACHED_MNRL_MINI_BATCH = 32


@dataclass(frozen=True)
class GradCache:
    mini_batch: int
    reason: str


def grad_cache_plan(
    loss: str, batch_size: int, mini_batch_size: int | None, texts_per_row: int, max_seq_length: int, device: str, trained_share: float = 1.0
) -> GradCache | None:
    """Whether (and with what mini-batch) the in-batch-negatives loss runs as GradCache; None: plain.

    `trained_share`: the share of the layers that learn (--train-layers); only theirs keep a graph."""
    if loss == "cached-mnrl":
        return GradCache(mini_batch_size or CACHED_MNRL_MINI_BATCH, "loss cached-mnrl")
    if loss != "mnrl":
        return None
    if mini_batch_size is not None:
        if mini_batch_size >= batch_size:
            return None
        return GradCache(mini_batch_size, f"miniBatchSize {mini_batch_size} < batchSize {batch_size}")
    tokens = batch_size * texts_per_row * max_seq_length * trained_share
    if device != "cpu" or tokens <= CPU_TOKENS_WITH_GRAPH:
        return None
    # Mini-batches are per text column: even one of the whole batch divides the graph by texts_per_row.
    return GradCache(
        min(batch_size, max(1, int(CPU_TOKENS_WITH_GRAPH // (max_seq_length * trained_share)))),
        f"CPU step of {batch_size} rows × {texts_per_row} texts × {max_seq_length} tokens > {CPU_TOKENS_WITH_GRAPH} tokens with gradients at once",
    )


def peak_rss_mb() -> int:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
