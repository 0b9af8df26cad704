"""Compute the frozen lower layers once per text, not once per step.

With --train-layers the embeddings and lower layers stay as the base has them and run without dropout
(train.freeze_below_top), so their output for a text never changes during training. A chunk comes back
as the positive of its own questions and as other queries' hard negatives, and every epoch again; on a
CPU those repeated forward passes through the frozen layers are most of a step. This keeps each text's
output of the last frozen layer, keyed by its token ids, and runs the frozen stack only for texts it has
not seen. The layers above get exactly the states they would have computed (to float rounding: a text's
states do not depend on how far its batch is padded, since padded keys are masked).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FrozenStatesCache:
    max_bytes: int
    hits: int = 0
    misses: int = 0
    bytes: int = 0
    full: bool = False
    # Older transformers return (hidden_states, ...) from a layer; the stand-ins answer in kind.
    tuples: bool = False
    _states: dict = field(default_factory=dict)
    _ids: object = None
    _mask: object = None
    _types: object = None

    def answer(self, hidden_states):
        return (hidden_states,) if self.tuples else hidden_states

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "texts": len(self._states), "mb": round(self.bytes / 2**20), "full": self.full}


def cache_frozen_states(auto_model, n_trained: int, max_mb: int) -> FrozenStatesCache | None:
    """Install the cache on a BERT-style encoder (encoder.layer) whose top n_trained layers learn and whose
    lower layers are frozen in inference mode; None where the model is not of that shape (it then trains
    as before, uncached). At most max_mb of states are kept; texts beyond that are computed each time."""
    encoder = getattr(auto_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None or n_trained >= len(layers) or max_mb <= 0:
        return None
    cache = FrozenStatesCache(max_bytes=max_mb * 2**20)
    lower = list(layers[: len(layers) - n_trained])
    originals = [layer.forward for layer in lower]

    # The batch's token ids and attention mask, as the model's forward receives them (sentence-transformers
    # calls forward directly, past any hook). The mask, not the pad id, says where a text ends: texts of
    # different columns are padded to one length with zeros when the loss embeds them together.
    model_forward = auto_model.forward

    def forward(*args, **kwargs):
        cache._ids = kwargs.get("input_ids", args[0] if args else None)
        cache._mask, cache._types = kwargs.get("attention_mask"), kwargs.get("token_type_ids")
        try:
            return model_forward(*args, **kwargs)
        finally:
            cache._ids = cache._mask = cache._types = None

    auto_model.forward = forward

    def first_lower(hidden_states, attention_mask=None, *args, **kwargs):
        ids, mask, types = cache._ids, cache._mask, cache._types
        keys = _keys(ids, mask, types, hidden_states.shape[0]) if not any(a is not None for a in args) else None
        if keys is None:
            return cache.answer(_run(cache, originals, hidden_states, attention_mask, args, kwargs))
        keys, lengths = [k for k, _ in keys], [n for _, n in keys]
        missing = [b for b, k in enumerate(keys) if k not in cache._states]
        computed = {}
        if missing:
            rows = missing if len(missing) < len(keys) else slice(None)
            sub_mask = attention_mask[rows] if attention_mask is not None and attention_mask.shape[0] == len(keys) else attention_mask
            out = _run(cache, originals, hidden_states[rows], sub_mask, args, kwargs)
            for j, b in enumerate(missing):
                state = out[j, : lengths[b]].detach().clone()
                computed[b] = state
                if cache.bytes + state.numel() * state.element_size() <= cache.max_bytes:
                    cache._states[keys[b]] = state
                    cache.bytes += state.numel() * state.element_size()
                else:
                    cache.full = True
        cache.misses += len(missing)
        cache.hits += len(keys) - len(missing)
        result = hidden_states.new_zeros(hidden_states.shape)
        for b, k in enumerate(keys):
            state = computed.get(b)
            if state is None:
                state = cache._states[k]
            result[b, : state.shape[0]] = state
        return cache.answer(result)

    lower[0].forward = first_lower
    for layer in lower[1:]:
        # The first frozen layer already returns the last one's output.
        layer.forward = lambda hidden_states, *args, **kwargs: cache.answer(hidden_states)
    return cache


def _keys(ids, mask, types, batch: int):
    """Per row: (its token ids up to the padding and their types, as a key; its length), or None where
    rows are not padded on the right (a token after padding) or the ids are not this batch's."""
    if ids is None or ids.dim() != 2 or ids.shape[0] != batch or (mask is not None and mask.shape != ids.shape):
        return None
    real = mask.sum(dim=1).tolist() if mask is not None else [ids.shape[1]] * batch
    keys = []
    for b, n in enumerate(real):
        n = int(n)
        row = ids[b]
        if mask is not None and n < row.shape[0] and bool(mask[b, n:].any()):
            return None
        key = (row[:n].cpu().numpy().tobytes(), types[b, :n].cpu().numpy().tobytes() if types is not None else b"")
        keys.append((key, n))
    return keys


def _run(cache: FrozenStatesCache, originals, hidden_states, attention_mask, args, kwargs):
    for forward in originals:
        out = forward(hidden_states, attention_mask, *args, **kwargs)
        cache.tuples = isinstance(out, tuple)
        hidden_states = out[0] if cache.tuples else out
    return hidden_states
