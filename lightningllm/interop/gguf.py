"""GGUF export for llama.cpp: ``write_gguf(model, tokenizer, path, quant)`` writes one self-contained file.

The file uses llama.cpp's ``llama`` architecture, so only Llama-style models export: ``norm
rmsnorm``, ``mlp swiglu``, ``pos_emb rope``, with or without biases, grouped-query heads and tied
or untied heads. GPT-2-style models are refused: llama.cpp's ``gpt2`` graph applies ``ggml_gelu``,
the tanh approximation, while ours is the exact erf GELU, so its logits would differ from ours.
Our RoPE rotates (first half, second half) pairs like Hugging Face Llama and llama.cpp rotates
adjacent pairs, so the query and key rows (and biases) are permuted per head as llama.cpp's
``convert_hf_to_gguf.py`` does. The embedding and output head have ``padded_vocab_size`` rows and
llama.cpp takes the vocabulary size from the token list, so the list is padded with unused
``[PAD<id>]`` tokens (as ``convert_hf_to_gguf.py`` pads a padded vocabulary).

The tokenizer must be ours, byte-level BPE with the pre-tokenizer ``Tokenizer.train`` builds:
``Digits(individual_digits=True)`` then ``ByteLevel(add_prefix_space=False, use_regex=True)``,
that is, every digit isolated, then GPT-2's regex. llama.cpp has no general pre-tokenizer; it
names fixed regex lists, and ``smollm`` is exactly ours (``\\p{N}``, then GPT-2's regex; SmolLM's
tokenizer is built the same way). ``refact`` and ``starcoder`` split the same but turn on
llama.cpp's ``clean_spaces``, which drops the space in " ." and " 's" when it detokenizes; ours keeps
every byte. A tokenizer with another pre-tokenizer, a normalizer, or a char (WordLevel) model would
tokenize differently in llama.cpp and is refused. No BOS is added (``add_bos_token`` false): our
generation and prediction feed prompts without one. Special tokens are control tokens, which
llama.cpp recognizes in prompt text only when asked to parse special tokens (``llama-server`` does
for prompts; ``llama_cpp.Llama.tokenize`` needs ``special=True``), while our
``Tokenizer.encode`` always does. The chat format of ``lightningllm.data.instruct`` goes in as the
chat template, with ``<|end|>`` as end-of-turn.

``quant="f16"`` stores 2-D weights as float16 and 1-D ones (norms, biases) as float32, llama.cpp's
convention; ``"q8_0"`` stores 2-D weights as Q8_0 where their rows are a multiple of its 32-value
block, else float16, as ``convert_hf_to_gguf.py --outtype q8_0`` does. Writing needs the ``gguf``
package, llama.cpp's own writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import torch

from lightningllm.data.instruct import END, ROLE_TAGS
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.interop.hf_tokenizer import CHAT_TEMPLATE
from lightningllm.model.config import GPTConfig
from lightningllm.model.gpt import GPT
from lightningllm.model.lora import merged_state_dict

GGUFQuant = Literal["f16", "q8_0"]
QUANTS = ("f16", "q8_0")
ARCHITECTURE = "llama"
PRE_TOKENIZER = "smollm"
"""llama.cpp's pre-tokenizer with our regexes (``\\p{N}``, then GPT-2's) and no space cleaning."""
LLAMA_STYLE = {"norm": "rmsnorm", "mlp": "swiglu", "pos_emb": "rope"}
F16_MAX = 65504.0
MISSING_GGUF = "GGUF export needs the gguf package: pip install 'lightningllm[gguf]'"


def write_gguf(model: GPT, tokenizer: Tokenizer, path: str | Path, quant: GGUFQuant = "f16") -> None:
    """Write ``model`` and ``tokenizer`` as a GGUF file at ``path`` that llama.cpp loads.

    Args:
        model: a Llama-style ``GPT`` (LoRA adapters, if any, are merged into the written weights).
        tokenizer: the byte-level BPE tokenizer the model was trained with.
        path: the file to write (overwritten if it exists).
        quant: ``"f16"`` or ``"q8_0"`` for the 2-D weights; 1-D ones are always float32.

    Raises:
        ValueError: one line naming what llama.cpp cannot reproduce (model shape, tokenizer, quant).
        ImportError: the ``gguf`` package is not installed.
    """
    if quant not in QUANTS:
        raise ValueError(f"GGUF quant must be one of {QUANTS}, got {quant!r}")
    config = model.config
    check_llama_shape(config)
    check_tokenizer(tokenizer, config.padded_vocab_size)
    gguf = _import_gguf()
    vocab = gguf_vocabulary(tokenizer, config.padded_vocab_size)
    tensors = [(name, *_encode(name, t.numpy(), quant, gguf)) for name, t in llama_tensors(model).items()]
    writer = gguf.GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name("lightningllm")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(config.padded_vocab_size)
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.mlp_hidden)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_kv_head)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_rope_dimension_count(config.head_size)
    writer.add_rope_freq_base(config.rope_base)

    tokens, types, merges = vocab
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_id)
    writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_pad_token_id(tokenizer.pad_id)
    end_id = tokenizer.hf.token_to_id(END)
    if end_id is not None:
        writer.add_eot_token_id(end_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if all(tokenizer.hf.token_to_id(tag) is not None for tag in (*ROLE_TAGS.values(), END)):
        writer.add_chat_template(CHAT_TEMPLATE)
    for name, data, raw_dtype in tensors:
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _encode(name: str, data: np.ndarray, quant: GGUFQuant, gguf: ModuleType) -> tuple[np.ndarray, object | None]:
    """(array, raw ggml type or None) for one tensor: 1-D float32; 2-D float16, or Q8_0 where rows allow."""
    if data.ndim == 1:
        return data.astype(np.float32), None
    _check_f16_range(name, data)
    if quant == "q8_0":
        try:
            return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
        except gguf.QuantError:  # rows not a multiple of the 32-value block: float16, as convert_hf_to_gguf does
            pass
    return data.astype(np.float16), None


def check_llama_shape(config: GPTConfig) -> None:
    """Raise a one-line ``ValueError`` unless llama.cpp's ``llama`` architecture computes what ``config`` does."""
    wrong = [
        f"{field} {getattr(config, field)}" for field, want in LLAMA_STYLE.items() if getattr(config, field) != want
    ]
    if not wrong:
        return
    why = ""
    if config.mlp == "gelu":
        why = (
            " (llama.cpp's gpt2 graph uses the tanh-approximate GELU and ours the exact erf GELU, "
            "so GPT-2-style models would not compute the same logits)"
        )
    raise ValueError(
        f"GGUF export supports Llama-style models only (norm rmsnorm, mlp swiglu, pos_emb rope), "
        f"this one has {', '.join(wrong)}{why}"
    )


def check_tokenizer(tokenizer: Tokenizer, n_vocab: int) -> None:
    """Raise a one-line ``ValueError`` for a tokenizer llama.cpp would split differently from ours."""
    if tokenizer.kind != "bpe":
        raise ValueError(
            f"GGUF export needs a byte-level BPE tokenizer, this one is kind {tokenizer.kind!r} "
            "(a WordLevel model), which llama.cpp has no equivalent of"
        )
    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    if spec.get("normalizer") is not None:
        raise ValueError("GGUF export needs a tokenizer without a normalizer: llama.cpp's BPE tokenizer has none")
    if (
        model.get("dropout")
        or model.get("continuing_subword_prefix")
        or model.get("end_of_word_suffix")
        or model.get("ignore_merges")
        or model.get("byte_fallback")
    ):
        raise ValueError(
            "GGUF export needs a plain BPE model (no dropout, subword prefix or suffix, ignore_merges or "
            "byte_fallback): llama.cpp's BPE tokenizer has none of them"
        )
    if not _is_our_pre_tokenizer(spec.get("pre_tokenizer")):
        raise ValueError(
            "GGUF export needs the pre-tokenizer Tokenizer.train builds (Digits(individual_digits=True) then "
            f"ByteLevel(add_prefix_space=False, use_regex=True)), llama.cpp's {PRE_TOKENIZER!r}; this tokenizer has "
            f"{json.dumps(spec.get('pre_tokenizer'))}"
        )
    if tokenizer.vocab_size > n_vocab:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding only {n_vocab} rows"
        )


def gguf_vocabulary(tokenizer: Tokenizer, n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) for llama.cpp's ``gpt2`` tokenizer, the tokens padded to ``n_vocab``."""
    gguf = _import_gguf()
    spec = json.loads(tokenizer.to_str())
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    # one token per embedding row: ids with no token (rows past the tokenizer's, holes) get an unused name
    tokens = [tokenizer.hf.id_to_token(i) if i < tokenizer.vocab_size else None for i in range(n_vocab)]
    taken = {t for t in tokens if t is not None}
    types: list[int] = []
    for token_id, token in enumerate(tokens):
        if token is None:
            name = f"[PAD{token_id}]"
            while name in taken:
                name = f"[{name}]"
            tokens[token_id] = name
            types.append(gguf.TokenType.UNUSED)
        elif token_id in added:
            types.append(gguf.TokenType.CONTROL if added[token_id]["special"] else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, [int(t) for t in types], merges


def _is_our_pre_tokenizer(spec: dict | None) -> bool:
    """Whether a tokenizer.json pre-tokenizer is Sequence[Digits(individual), ByteLevel(no prefix space, regex)]."""
    if not spec or spec.get("type") != "Sequence" or len(spec.get("pretokenizers", [])) != 2:
        return False
    digits, byte_level = spec["pretokenizers"]
    return (
        digits.get("type") == "Digits"
        and digits.get("individual_digits") is True
        and byte_level.get("type") == "ByteLevel"
        and byte_level.get("add_prefix_space") is False
        and byte_level.get("use_regex", True) is True
    )


def llama_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under llama.cpp's tensor names, float32 on CPU, query/key rows permuted for its RoPE."""
    config = model.config
    state = {name: t.detach().float().cpu() for name, t in merged_state_dict(model).items()}
    hs, n_q, n_kv = config.head_size, config.n_head, config.n_kv_head
    out = {"token_embd.weight": state["wte.weight"]}
    for i in range(config.n_layer):
        p, blk = f"blocks.{i}.", f"blk.{i}."
        out[blk + "attn_norm.weight"] = state[p + "norm_1.weight"]
        for leaf in ("weight", "bias") if config.bias else ("weight",):
            q, k, v = state[f"{p}attn.qkv.{leaf}"].split([n_q * hs, n_kv * hs, n_kv * hs])
            out[f"{blk}attn_q.{leaf}"] = permute_for_llamacpp(q, n_q)
            out[f"{blk}attn_k.{leaf}"] = permute_for_llamacpp(k, n_kv)
            out[f"{blk}attn_v.{leaf}"] = v
            out[f"{blk}attn_output.{leaf}"] = state[f"{p}attn.proj.{leaf}"]
        out[blk + "ffn_norm.weight"] = state[p + "norm_2.weight"]
        for ours, theirs in (("gate", "ffn_gate"), ("up", "ffn_up"), ("proj", "ffn_down")):
            for leaf in ("weight", "bias") if config.bias else ("weight",):
                out[f"{blk}{theirs}.{leaf}"] = state[f"{p}mlp.{ours}.{leaf}"]
    out["output_norm.weight"] = state["norm_f.weight"]
    if not config.tie_embeddings:  # llama.cpp reuses token_embd when output.weight is absent
        out["output.weight"] = state["lm_head.weight"]
    return {name: t.contiguous() for name, t in out.items()}


def permute_for_llamacpp(rows: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder each head's rows from (first half, second half) RoPE pairs to llama.cpp's adjacent pairs.

    Row ``j`` and ``j + hs/2`` of a head become rows ``2j`` and ``2j + 1``: ``rows`` (n_head * hs, ...) keeps
    its shape. The same ``permute`` that ``convert_hf_to_gguf.py`` applies to Hugging Face Llama's q/k.
    """
    hs = rows.shape[0] // n_head
    return rows.reshape(n_head, 2, hs // 2, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


def _import_gguf() -> ModuleType:
    try:
        import gguf
    except ImportError:
        raise ImportError(MISSING_GGUF) from None
    return gguf


def _check_f16_range(name: str, data: np.ndarray) -> None:
    """Refuse a weight float16 cannot hold (it would become inf in the file)."""
    largest = float(np.abs(data).max()) if data.size else 0.0
    if not np.isfinite(largest) or largest > F16_MAX:
        raise ValueError(f"GGUF tensor {name} has a weight of magnitude {largest:g}, beyond float16's {F16_MAX:g}")
