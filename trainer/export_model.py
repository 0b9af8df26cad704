"""Export a sentence-transformers model into embedflow's `model` artifact layout.

    out_dir/
      st/                  the sentence-transformers directory (tokenizer.json etc. included)
      onnx/model.onnx      fp32 graph: inputs as the tokenizer names them, outputs
                           `sentence_embedding` (pooled and normalised) and `token_embeddings`;
                           BERT-family layers fused into onnxruntime contrib ops (com.microsoft)
      onnx/model_int8.onnx the same graph with int8 dynamic quantisation of its weights
      model.json           what a loader needs: dim, pooling, normalize, maxSeqLength, prefixes...;
                           its `card` holds the base's base_model, license and language for the README card
      modules.json, config_sentence_transformers.json
                           the folder itself as a sentence-transformers model: modules.json's paths point
                           into st/ (no weights are copied), the prompts are model.json's prefixes, so
                           `SentenceTransformer(out_dir)` loads what `SentenceTransformer(out_dir/st)` does
      config.json, tokenizer.json, tokenizer_config.json (special_tokens_map.json if any)
                           copies of st/'s, at the top: transformers.js loads the directory itself
                           (AutoModel / pipeline pick onnx/model.onnx, dtype 'int8' onnx/model_int8.onnx)

Why the pooling and normalisation are baked into the graph: the ONNX file then computes exactly what
`SentenceTransformer.encode` computes (the ST modules themselves are traced), so no second
implementation of pooling can drift from the model's config, and every consumer (the TypeScript
encoder, transformers.js, Python onnxruntime) gets the same vector from the `sentence_embedding`
output. `token_embeddings` is kept as an output for tools that pool on their own (transformers.js
feature-extraction); onnxruntime only computes the outputs it is asked for.

Used by the training kernel (`from export_model import export_model`) and the prepareModel stage:
    python trainer/export_model.py --model DIR --out DIR [--name N] [--source S]
On success the last stdout line is the model.json written, as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

# Texts to check the export against PyTorch: Latin, Japanese, empty-ish, long (truncated).
_CHECK_TEXTS = [
    "How many people live in Tokyo?",
    "東京都の人口は約1400万人で、日本の首都である。",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 80,
    "富士山は静岡県と山梨県にまたがる活火山である。標高3776メートル。",
    "query: what is the boiling point of water at sea level",
]

# Floor for the export self-check (cosine with PyTorch). fp32 should be ~1.0; int8 is looser.
MIN_COSINE_FP32 = 0.9999
MIN_COSINE_INT8 = 0.95


class ExportError(Exception):
    """The model cannot be exported as asked; the message says what to change."""


class _SentenceEmbedding(torch.nn.Module):
    """The whole ST pipeline (transformer, pooling, normalize...) as a module with tensor inputs."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor):
        features = dict(zip(self.input_names, inputs))
        out = self.model(features)
        return out["sentence_embedding"], out["token_embeddings"]


def _load(st_model_dir: Path):
    from sentence_transformers import SentenceTransformer

    # Eager attention traces to plain MatMul/Softmax ops that onnxruntime fuses and quantises;
    # the SDPA path builds its mask with Python control flow that tracing would freeze.
    return SentenceTransformer(str(st_model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"})


def _describe(model, query_prefix: str | None, passage_prefix: str | None) -> dict:
    from sentence_transformers.sentence_transformer.modules import Pooling
    from sentence_transformers.base.modules.normalize import Normalize

    pooling = next((m for m in model if isinstance(m, Pooling)), None)
    if pooling is None:
        raise ExportError("the model has no Pooling module; embedflow exports sentence-embedding models only")
    cfg = pooling.get_config_dict()
    if cfg.get("include_prompt") is False:
        # The prompt-excluding pooling needs the prompt length at run time, which the graph cannot know.
        raise ExportError("Pooling(include_prompt=False) is not supported by the ONNX export")
    prompts = model.prompts or {}
    dim = model.get_embedding_dimension()
    return {
        "dim": int(dim),
        "pooling": cfg.get("pooling_mode", "mean"),
        "normalize": any(isinstance(m, Normalize) for m in model),
        "maxSeqLength": int(model.max_seq_length),
        "queryPrefix": query_prefix if query_prefix is not None else prompts.get("query", "") or "",
        "passagePrefix": passage_prefix
        if passage_prefix is not None
        else (prompts.get("document") or prompts.get("passage") or ""),
    }


def _export_fp32(model, onnx_path: Path, opset: int) -> list[str]:
    tokenizer = model.tokenizer
    input_names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    sample = tokenizer(["embedflow export", "a second, longer sample sentence"], padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in input_names)
    wrapper = _SentenceEmbedding(model, input_names).eval()
    dynamic = {n: {0: "batch", 1: "sequence"} for n in input_names}
    dynamic["sentence_embedding"] = {0: "batch"}
    dynamic["token_embeddings"] = {0: "batch", 1: "sequence"}
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            args,
            str(onnx_path),
            input_names=input_names,
            output_names=["sentence_embedding", "token_embeddings"],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return input_names


def _optimize(raw_path: Path, out_path: Path, config) -> bool:
    """Fuse the transformer's subgraphs (Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm) into
    onnxruntime's contrib ops: the fused graph runs markedly faster on CPU than the traced one, and the
    export check below still compares it with PyTorch. Returns False (raw graph kept) for architectures
    the fuser does not know."""
    if getattr(config, "model_type", None) not in _FUSABLE:
        shutil.copyfile(raw_path, out_path)
        return False
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(raw_path),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=0,
    )
    fused.save_model_to_file(str(out_path))
    return True


# Encoder families whose layers match onnxruntime's BERT fusion patterns.
_FUSABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert"}


def _quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Dynamic quantisation: int8 weights per output channel, activations quantised per batch at run time.
    # reduce_range keeps weights to 7 bits: CPUs without VNNI multiply u8 × s8 pairs into int16 and
    # saturate on full-range weights (cosine with PyTorch fell to ~0.95 on Japanese text); 7-bit
    # weights keep it ≥ 0.97 and stay on the fast u8s8 kernels (u8 weights run ~15% slower).
    # Attention is quantised too (its QKV projection); the embedding lookup stays fp32.
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        op_types_to_quantize=["MatMul", "Attention"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _write_top_level_st_files(st_dir: Path, out_dir: Path, info: dict) -> None:
    modules = json.loads((st_dir / "modules.json").read_text(encoding="utf-8"))
    for m in modules:
        m["path"] = f"{st_dir.name}/{m['path']}" if m.get("path") else st_dir.name
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    st_config_path = st_dir / "config_sentence_transformers.json"
    config = json.loads(st_config_path.read_text(encoding="utf-8")) if st_config_path.is_file() else {}
    # model.json's prefixes (given ones included) are what the ONNX consumers prepend; prompt_name="query" in
    # Python must prepend the same text.
    config["prompts"] = {**(config.get("prompts") or {}), "query": info["queryPrefix"], "document": info["passagePrefix"]}
    (out_dir / "config_sentence_transformers.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


_HUB_ID = re.compile(r"\b([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)\b")


def _card_facts(st_model_dir: Path, source: str | None) -> dict:
    """What the model card says of the base: base_model, license, language. The model's own card (its
    README.md front matter) first; for a `package:` model, the package's metadata (its License, a Hugging
    Face `Model` URL or a hub id in its summary) next; else license 'unknown' and no base_model."""
    facts: dict = {}
    readme = st_model_dir / "README.md"
    if readme.is_file():
        try:
            from huggingface_hub import ModelCard

            data = ModelCard.load(readme).data
            facts = {"baseModel": data.base_model, "license": data.license, "language": data.language}
        except Exception:  # a README that is not a model card says nothing about the model
            facts = {}
    if source and source.startswith("package:"):
        import importlib.metadata

        try:
            meta = importlib.metadata.metadata(source[len("package:") :])
        except importlib.metadata.PackageNotFoundError:
            meta = None
        if meta is not None:
            # Hugging Face's license ids are lower case ('mit', 'apache-2.0'); a license text is no id.
            license_id = (meta.get("License") or "").strip().lower()
            facts["license"] = facts.get("license") or (license_id if license_id and " " not in license_id else None)
            urls = [u.split(",", 1)[1].strip() for u in meta.get_all("Project-URL") or [] if u.lower().startswith("model,")]
            hub = [u.split("huggingface.co/", 1)[1].strip("/") for u in urls if "huggingface.co/" in u]
            in_summary = _HUB_ID.search(meta.get("Summary") or "")
            facts["baseModel"] = facts.get("baseModel") or (hub[0] if hub else in_summary.group(1) if in_summary else None)
    elif source and _HUB_ID.fullmatch(source) and not source.startswith("."):
        facts["baseModel"] = facts.get("baseModel") or source
    language = facts.get("language")
    return {
        "baseModel": facts.get("baseModel") if isinstance(facts.get("baseModel"), str) else None,
        "license": facts.get("license") if isinstance(facts.get("license"), str) else "unknown",
        "language": [language] if isinstance(language, str) else list(language or []),
    }


# What transformers.js reads from a model directory's top level besides onnx/.
_TRANSFORMERS_JS_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _write_transformers_js_files(st_dir: Path, out_dir: Path, max_seq_length: int) -> None:
    for name in _TRANSFORMERS_JS_FILES:
        if (st_dir / name).is_file():
            shutil.copyfile(st_dir / name, out_dir / name)
    # transformers.js truncates at the tokenizer's model_max_length; SentenceTransformer at its own
    # max_seq_length, which a trained model may have set lower.
    tok_config_path = out_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text(encoding="utf-8")) if tok_config_path.is_file() else {}
    tok_config["model_max_length"] = max_seq_length
    tok_config_path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check(model, onnx_path: Path, input_names: list[str], floor: float) -> float:
    import onnxruntime as ort

    reference = model.encode(_CHECK_TEXTS, convert_to_numpy=True, normalize_embeddings=False, batch_size=8)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    enc = model.tokenizer(
        _CHECK_TEXTS, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="np"
    )
    (got,) = session.run(["sentence_embedding"], {n: enc[n].astype(np.int64) for n in input_names})
    cos = np.sum(reference * got, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1))
    worst = float(cos.min())
    if worst < floor:
        raise ExportError(f"{onnx_path.name} disagrees with PyTorch: min cosine {worst:.6f} < {floor}")
    return worst


def export_model(
    st_model_dir: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    source: str | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    opset: int = 17,
) -> dict:
    """Write the layout above into out_dir; return model.json's content.

    st_model_dir may already be out_dir/st (the trainer saves there first); it is then not copied.
    Raises ExportError if the exported graphs disagree with PyTorch beyond the stated floors.
    """
    st_model_dir = Path(st_model_dir).resolve()
    out_dir = Path(out_dir).resolve()
    if not (st_model_dir / "modules.json").is_file():
        raise ExportError(f"{st_model_dir} is not a sentence-transformers directory (no modules.json)")
    torch.manual_seed(0)
    model = _load(st_model_dir).eval()
    info = _describe(model, query_prefix, passage_prefix)

    st_dir = out_dir / "st"
    if st_dir != st_model_dir:
        if st_dir.exists():
            shutil.rmtree(st_dir)
        # The artifact's README.md is the card; sentence-transformers' own would be a second one.
        model.save(str(st_dir), create_model_card=False)
    if not (st_dir / "tokenizer.json").is_file():
        raise ExportError("the tokenizer has no tokenizer.json (a fast tokenizer is needed by the TypeScript encoder)")
    _write_transformers_js_files(st_dir, out_dir, info["maxSeqLength"])
    _write_top_level_st_files(st_dir, out_dir, info)

    fp32 = out_dir / "onnx" / "model.onnx"
    int8 = out_dir / "onnx" / "model_int8.onnx"
    raw = out_dir / "onnx" / "traced.onnx"
    input_names = _export_fp32(model, raw, opset)
    fused = _optimize(raw, fp32, model[0].auto_model.config)
    raw.unlink()
    _quantize_int8(fp32, int8)
    with torch.no_grad():
        cos_fp32 = _check(model, fp32, input_names, MIN_COSINE_FP32)
        cos_int8 = _check(model, int8, input_names, MIN_COSINE_INT8)

    meta = {
        "name": name or st_model_dir.name,
        "source": source or str(st_model_dir),
        **info,
        "inputNames": input_names,
        "outputName": "sentence_embedding",
        "onnx": {"fp32": "onnx/model.onnx", "int8": "onnx/model_int8.onnx", "opset": opset, "fused": fused},
        "exportCheck": {"minCosineFp32": round(cos_fp32, 6), "minCosineInt8": round(cos_int8, 6)},
        "card": _card_facts(st_model_dir, source),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="sentence-transformers model directory")
    p.add_argument("--out", required=True, help="output directory (the model artifact layout)")
    p.add_argument("--name", help="model name for model.json (default: the directory name)")
    p.add_argument("--source", help="where the model came from, for model.json (default: --model)")
    p.add_argument("--query-prefix", help="override the model's query prompt")
    p.add_argument("--passage-prefix", help="override the model's document/passage prompt")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (the parent is gone)")
    a = p.parse_args(argv)
    if a.exit_with_stdin:
        from parent_watch import exit_when_stdin_closes

        exit_when_stdin_closes()
    try:
        meta = export_model(
            a.model,
            a.out,
            name=a.name,
            source=a.source,
            query_prefix=a.query_prefix,
            passage_prefix=a.passage_prefix,
            opset=a.opset,
        )
    except ExportError as err:
        print(f"ExportError: {err}", file=sys.stderr)
        return 2
    print(json.dumps(meta, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
