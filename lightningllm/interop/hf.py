"""Hugging Face transformers folders: a ``GPT`` as ``GPT2LMHeadModel`` or ``LlamaForCausalLM``, and back.

Three of our shapes have a transformers class that computes exactly what ``GPT`` does:

- **GPT-2-style** (``norm layernorm``, ``mlp gelu``, ``pos_emb learned``, ``n_kv_head = n_head``):
  ``GPT2LMHeadModel``. Its linears are ``Conv1D`` layers that store ``(in, out)``, so every weight
  is transposed; a model without biases gets zero biases; our GELU is the exact (erf) one, which
  is ``activation_function: gelu`` (GPT-2's own ``gelu_new`` is the tanh approximation).
- **Llama-style** (``norm rmsnorm``, ``mlp swiglu``, ``pos_emb rope``; any ``n_kv_head``):
  ``LlamaForCausalLM``. Our fused ``qkv`` rows split into ``q_proj``/``k_proj``/``v_proj``. Our RoPE
  rotates (first half, second half) of each head, HF's ``rotate_half`` layout, so no row is permuted.
- **GPT-NeoX-style** (``norm layernorm``, ``mlp gelu``, ``pos_emb rope``, ``n_kv_head = n_head``; the
  demo's shape): ``GPTNeoXForCausalLM`` with sequential residuals (``use_parallel_residual: false``)
  and RoPE on every dimension (``rotary_pct 1``). Its fused ``query_key_value`` holds each head's
  q, k and v rows together, so our (all q, all k, all v) rows are regrouped per head.

``save_hf(model, tokenizer, DIR)`` writes ``config.json``, ``generation_config.json``, the weights
(``model.safetensors``, or shards plus ``model.safetensors.index.json`` above ``max_shard_size``)
and the tokenizer files (``lightningllm.interop.hf_tokenizer``). ``load_hf(DIR)`` reads such a
folder (ours, or one transformers wrote for a model of these shapes) back into a ``GPT``; like
``GPT.from_pretrained`` it checks names and shapes before reading any weight, and every problem
is a one-line ``ValueError`` naming the file. Neither needs ``transformers`` installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import torch

from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, GPTConfig
from lightningllm.model.pretrained import read_header

Architecture = Literal["gpt2", "llama", "gpt_neox"]

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9
"""transformers' own default shard size (5 GB); each shard holds whole tensors."""

MODEL_CLASSES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "gpt_neox": "GPTNeoXForCausalLM"}

GPT2_LINEARS = (
    ("attn.qkv", "attn.c_attn"),
    ("attn.proj", "attn.c_proj"),
    ("mlp.fc", "mlp.c_fc"),
    ("mlp.proj", "mlp.c_proj"),
)
"""Our linears in a block and the ``Conv1D`` layers of a GPT-2 block they become (weights transposed)."""
LLAMA_LINEARS = (
    ("attn.proj", "self_attn.o_proj"),
    ("mlp.gate", "mlp.gate_proj"),
    ("mlp.up", "mlp.up_proj"),
    ("mlp.proj", "mlp.down_proj"),
)
"""Our linears in a block and the Llama block's (the fused ``attn.qkv`` splits into q/k/v_proj)."""
NEOX_LINEARS = (
    ("attn.qkv", "attention.query_key_value"),
    ("attn.proj", "attention.dense"),
    ("mlp.fc", "mlp.dense_h_to_4h"),
    ("mlp.proj", "mlp.dense_4h_to_h"),
)
"""Our linears in a block and the GPT-NeoX block's (``query_key_value``'s rows regrouped per head)."""

_GPT2_NEEDS = "norm layernorm, mlp gelu, pos_emb learned, n_kv_head = n_head"
_LLAMA_NEEDS = "norm rmsnorm, mlp swiglu, pos_emb rope"
_NEOX_NEEDS = "norm layernorm, mlp gelu, pos_emb rope, n_kv_head = n_head"

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


# --- which transformers class -------------------------------------------------------------------
def architecture(config: GPTConfig) -> Architecture:
    """The transformers architecture that computes exactly what a ``GPT`` of ``config`` does.

    Raises a one-line ``ValueError`` saying why neither fits and which options would.
    """
    choice = (config.norm, config.mlp, config.pos_emb)
    if choice in (("layernorm", "gelu", "learned"), ("layernorm", "gelu", "rope")):
        arch, name = ("gpt2", "GPT2LMHeadModel") if config.pos_emb == "learned" else ("gpt_neox", "GPTNeoXForCausalLM")
        if config.n_kv_head != config.n_head:
            raise ValueError(
                f"cannot export to Hugging Face: a LayerNorm/GELU model must have n_kv_head = n_head, but it has "
                f"{config.n_kv_head} of {config.n_head} ({name} has no grouped-query attention; Llama-style models "
                f"do: {_LLAMA_NEEDS})"
            )
        return arch
    if choice == ("rmsnorm", "swiglu", "rope"):
        return "llama"
    raise ValueError(
        f"cannot export to Hugging Face: norm {config.norm}, mlp {config.mlp}, pos_emb {config.pos_emb} is not "
        f"GPT-2-style ({_GPT2_NEEDS}), GPT-NeoX-style ({_NEOX_NEEDS}) nor Llama-style ({_LLAMA_NEEDS}), the shapes "
        "transformers has classes for"
    )


# --- config.json ----------------------------------------------------------------------------------
def hf_config(config: GPTConfig, tokenizer: Tokenizer | None, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The ``config.json`` of the transformers model equal to a ``GPT`` of ``config``."""
    arch = architecture(config)
    ids = (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) if tokenizer is not None else (None, None, None)
    special = dict(zip(("bos_token_id", "eos_token_id", "pad_token_id"), ids, strict=True))
    common = {
        "architectures": [MODEL_CLASSES[arch]],
        "model_type": arch,
        "vocab_size": config.padded_vocab_size,
        "initializer_range": config.init_std,
        "tie_word_embeddings": config.tie_embeddings,
        "use_cache": True,
        "dtype": _DTYPE_NAMES.get(dtype, "float32"),
        **special,
    }
    if arch == "gpt2":
        return {
            **common,
            "n_positions": config.block_size,
            "n_embd": config.n_embd,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_inner": config.mlp_hidden,
            "activation_function": "gelu",  # exact erf GELU, as ours (gelu_new is GPT-2's tanh approximation)
            "layer_norm_epsilon": config.norm_eps,
            "resid_pdrop": config.dropout,
            "embd_pdrop": config.dropout,
            "attn_pdrop": config.dropout,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
        }
    if arch == "gpt_neox":
        return {
            **common,
            "hidden_size": config.n_embd,
            "intermediate_size": config.mlp_hidden,
            "num_hidden_layers": config.n_layer,
            "num_attention_heads": config.n_head,
            "hidden_act": "gelu",  # exact erf GELU, as ours
            "max_position_embeddings": config.block_size,
            "layer_norm_eps": config.norm_eps,
            "use_parallel_residual": False,  # ours is x + attn(norm(x)), then + mlp(norm(x))
            "rotary_pct": 1.0,  # transformers 4 reads these two; 5 reads rope_parameters
            "rotary_emb_base": config.rope_base,
            "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base, "partial_rotary_factor": 1.0},
            "attention_bias": config.bias,
            "attention_dropout": config.dropout,
            "hidden_dropout": config.dropout,
        }
    return {
        **common,
        "hidden_size": config.n_embd,
        "intermediate_size": config.mlp_hidden,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,  # transformers 4 reads this; 5 reads rope_parameters
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": config.dropout,
        "pretraining_tp": 1,
    }


def gpt_config(data: dict[str, Any], path: Path, vocab_size: int | None = None) -> GPTConfig:
    """The ``GPTConfig`` of a transformers ``config.json`` (``data``) of one of the three architectures.

    ``bias`` is decided later from the weights (``load_hf``); ``vocab_size`` is the tokenizer's, when
    the folder has one of ours. Raises a one-line ``ValueError`` naming ``path`` for anything else.
    """
    arch = data.get("model_type")
    if arch not in MODEL_CLASSES:
        raise ValueError(
            f"{path}: model_type {arch!r} cannot be loaded: lightningllm reads the transformers architectures "
            f"{sorted(MODEL_CLASSES)} ({', '.join(MODEL_CLASSES.values())})"
        )
    classes = data.get("architectures") or [MODEL_CLASSES[arch]]
    if classes != [MODEL_CLASSES[arch]]:
        raise ValueError(f"{path}: architectures {classes} is not [{MODEL_CLASSES[arch]}]: only causal LMs load")
    get = _Fields(data, path)
    table = get.int("vocab_size")
    if arch == "gpt2":
        activation = data.get("activation_function", "gelu_new")
        if activation != "gelu":
            raise ValueError(
                f"{path}: activation_function {activation!r}: lightningllm's GELU is the exact (erf) one, "
                "activation_function 'gelu' (gelu_new is the tanh approximation)"
            )
        if data.get("scale_attn_weights", True) is not True or data.get("scale_attn_by_inverse_layer_idx", False):
            raise ValueError(f"{path}: attention scaled other than by 1/sqrt(head size) cannot be loaded")
        n_embd = get.int("n_embd")
        shape: dict[str, Any] = {
            "block_size": get.int("n_positions"),
            "n_layer": get.int("n_layer"),
            "n_head": get.int("n_head"),
            "n_embd": n_embd,
            "mlp_hidden": data.get("n_inner") or 4 * n_embd,
            "norm_eps": get.number("layer_norm_epsilon", 1e-5),
            "dropout": get.number("resid_pdrop", 0.0),
            "norm": "layernorm",
            "mlp": "gelu",
            "pos_emb": "learned",
        }
    elif arch == "gpt_neox":
        if data.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {data['hidden_act']!r}: lightningllm's GELU is the exact one, 'gelu'")
        if data.get("use_parallel_residual", True):
            raise ValueError(
                f"{path}: use_parallel_residual (attention and MLP read the same input) cannot be loaded: "
                "lightningllm's blocks are sequential"
            )
        rope = _plain_rope(data, path)
        partial = rope.get("partial_rotary_factor", data.get("rotary_pct", 0.25))
        if partial != 1:
            raise ValueError(
                f"{path}: RoPE on {partial:g} of each head cannot be loaded: lightningllm rotates all of it"
            )
        shape = {
            "block_size": get.int("max_position_embeddings"),
            "n_layer": get.int("num_hidden_layers"),
            "n_head": get.int("num_attention_heads"),
            "n_embd": get.int("hidden_size"),
            "mlp_hidden": get.int("intermediate_size"),
            "norm_eps": get.number("layer_norm_eps", 1e-5),
            "rope_base": float(rope.get("rope_theta", data.get("rotary_emb_base", 10000.0))),
            "dropout": get.number("hidden_dropout", 0.0),
            "norm": "layernorm",
            "mlp": "gelu",
            "pos_emb": "rope",
        }
    else:
        if data.get("hidden_act", "silu") != "silu":
            raise ValueError(f"{path}: hidden_act {data['hidden_act']!r}: a Llama-style model here uses silu (SwiGLU)")
        theta = _plain_rope(data, path).get("rope_theta")
        n_embd, n_head = get.int("hidden_size"), get.int("num_attention_heads")
        head_dim = data.get("head_dim") or n_embd // n_head
        if head_dim * n_head != n_embd:
            raise ValueError(
                f"{path}: head_dim {head_dim} x {n_head} heads is not hidden_size {n_embd}: lightningllm's heads "
                "split the residual width exactly"
            )
        shape = {
            "block_size": get.int("max_position_embeddings"),
            "n_layer": get.int("num_hidden_layers"),
            "n_head": n_head,
            "n_kv_head": data.get("num_key_value_heads") or n_head,
            "n_embd": n_embd,
            "mlp_hidden": get.int("intermediate_size"),
            "norm_eps": get.number("rms_norm_eps", 1e-6),
            "rope_base": float(theta if theta is not None else data.get("rope_theta", 10000.0)),
            "dropout": get.number("attention_dropout", 0.0),
            "norm": "rmsnorm",
            "mlp": "swiglu",
            "pos_emb": "rope",
        }
    tie = data.get("tie_word_embeddings", arch == "gpt2")
    vocab, multiple = table, 1
    if vocab_size is not None:
        if vocab_size > table:
            raise ValueError(f"{path}: vocab_size {table} is smaller than its tokenizer's {vocab_size} tokens")
        vocab = vocab_size
        multiple = next((m for m in (64, 1) if m * math.ceil(vocab_size / m) == table), table)
    try:
        return GPTConfig(
            vocab_size=vocab,
            padding_multiple=multiple,
            tie_embeddings=bool(tie),
            init_std=get.number("initializer_range", 0.02),
            bias=True,
            **shape,
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def _plain_rope(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The config's RoPE parameters (``rope_parameters``, or transformers 4's ``rope_scaling``); only plain RoPE."""
    rope = data.get("rope_parameters") or data.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise ValueError(f"{path}: rope_parameters must be a JSON object, got {json.dumps(rope)}")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"{path}: RoPE scaling {rope_type!r} cannot be loaded: only plain RoPE (rope_type default)")
    return rope


class _Fields:
    """Typed reads of a config.json's fields, each a one-line error naming the file and field."""

    def __init__(self, data: dict[str, Any], path: Path):
        self.data, self.path = data, path

    def int(self, name: str) -> int:
        value = self.data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{self.path}: field {name} must be a positive integer, got {json.dumps(value)}")
        return value

    def number(self, name: str, default: float) -> float:
        value = self.data.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{self.path}: field {name} must be a finite number, got {json.dumps(value)}")
        return float(value)


# --- weights: our names <-> transformers' names -----------------------------------------------------
def to_hf_state(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Our ``GPT`` state dict (plain names) as the transformers model's, contiguous CPU tensors.

    A tied head is stored once, as the embedding (transformers ties ``lm_head`` to it on load).
    """
    return {name: tensor.detach().cpu().contiguous() for name, tensor in _renamed(state, config).items()}


def _renamed(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """``to_hf_state``'s tensors as views (also of ``meta`` tensors, for their shapes alone)."""
    arch = architecture(config)
    out: dict[str, torch.Tensor] = {}
    hs, nh, nkv = config.head_size, config.n_head, config.n_kv_head

    def bias(name: str, size: int) -> torch.Tensor:
        found = state.get(name)
        return found if found is not None else torch.zeros(size, dtype=state["wte.weight"].dtype)

    if arch == "gpt2":
        out["transformer.wte.weight"] = state["wte.weight"]
        out["transformer.wpe.weight"] = state["wpe.weight"]
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
            for our, their in (("norm_1", "ln_1"), ("norm_2", "ln_2")):
                out[f"{theirs}{their}.weight"] = state[f"{ours}{our}.weight"]
                out[f"{theirs}{their}.bias"] = bias(f"{ours}{our}.bias", config.n_embd)
            for our, their in GPT2_LINEARS:
                weight = state[f"{ours}{our}.weight"]
                out[f"{theirs}{their}.weight"] = weight.t()  # Conv1D stores (in, out)
                out[f"{theirs}{their}.bias"] = bias(f"{ours}{our}.bias", weight.shape[0])
        out["transformer.ln_f.weight"] = state["norm_f.weight"]
        out["transformer.ln_f.bias"] = bias("norm_f.bias", config.n_embd)
    elif arch == "gpt_neox":
        out["gpt_neox.embed_in.weight"] = state["wte.weight"]
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"gpt_neox.layers.{i}."
            for our, their in (("norm_1", "input_layernorm"), ("norm_2", "post_attention_layernorm")):
                out[f"{theirs}{their}.weight"] = state[f"{ours}{our}.weight"]
                out[f"{theirs}{their}.bias"] = bias(f"{ours}{our}.bias", config.n_embd)
            for our, their in NEOX_LINEARS:
                regroup = per_head if our == "attn.qkv" else _same
                out[f"{theirs}{their}.weight"] = regroup(state[f"{ours}{our}.weight"], nh, hs)
                if our.startswith("mlp.") or config.bias:  # attention biases only with attention_bias
                    size = out[f"{theirs}{their}.weight"].shape[0]
                    out[f"{theirs}{their}.bias"] = regroup(bias(f"{ours}{our}.bias", size), nh, hs)
        out["gpt_neox.final_layer_norm.weight"] = state["norm_f.weight"]
        out["gpt_neox.final_layer_norm.bias"] = bias("norm_f.bias", config.n_embd)
    else:
        out["model.embed_tokens.weight"] = state["wte.weight"]
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
            out[f"{theirs}input_layernorm.weight"] = state[f"{ours}norm_1.weight"]
            out[f"{theirs}post_attention_layernorm.weight"] = state[f"{ours}norm_2.weight"]
            leaves = ("weight", "bias") if config.bias else ("weight",)
            for leaf in leaves:
                q, k, v = state[f"{ours}attn.qkv.{leaf}"].split([nh * hs, nkv * hs, nkv * hs], dim=0)
                out[f"{theirs}self_attn.q_proj.{leaf}"] = q
                out[f"{theirs}self_attn.k_proj.{leaf}"] = k
                out[f"{theirs}self_attn.v_proj.{leaf}"] = v
                for our, their in LLAMA_LINEARS:
                    out[f"{theirs}{their}.{leaf}"] = state[f"{ours}{our}.{leaf}"]
        out["model.norm.weight"] = state["norm_f.weight"]
    if not config.tie_embeddings:
        out[head_name(arch)] = state["lm_head.weight"]
    return out


def head_name(arch: Architecture) -> str:
    """The output head's tensor name: GPT-NeoX files call it ``embed_out`` (transformers 5 renames it on load)."""
    return "embed_out.weight" if arch == "gpt_neox" else "lm_head.weight"


def _same(tensor: torch.Tensor, n_head: int, head_size: int) -> torch.Tensor:
    return tensor


def per_head(tensor: torch.Tensor, n_head: int, head_size: int) -> torch.Tensor:
    """Fused q/k/v rows from our (all q, all k, all v) order to GPT-NeoX's (q, k, v of head 0, of head 1, ...)."""
    rest = tensor.shape[1:]
    return tensor.reshape(3, n_head, head_size, *rest).transpose(0, 1).reshape(tensor.shape)


def _per_kind(tensor: torch.Tensor, n_head: int, head_size: int) -> torch.Tensor:
    """The inverse of ``per_head``."""
    rest = tensor.shape[1:]
    return tensor.reshape(n_head, 3, head_size, *rest).transpose(0, 1).reshape(tensor.shape)


def from_hf_state(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """The inverse of ``to_hf_state``: transformers' tensors as our ``GPT`` state dict for ``config``.

    Biases are kept only when ``config.bias`` is set (``load_hf`` drops them when they are all zero).
    """
    arch = architecture(config)
    out: dict[str, torch.Tensor] = {}

    def take(our: str, their: str, transpose: bool = False) -> None:
        out[f"{our}.weight"] = state[f"{their}.weight"].t() if transpose else state[f"{their}.weight"]
        if config.bias:
            out[f"{our}.bias"] = state[f"{their}.bias"]

    if arch == "gpt2":
        out["wte.weight"] = state["transformer.wte.weight"]
        out["wpe.weight"] = state["transformer.wpe.weight"]
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
            take(f"{ours}norm_1", f"{theirs}ln_1")
            take(f"{ours}norm_2", f"{theirs}ln_2")
            for our, their in GPT2_LINEARS:
                take(f"{ours}{our}", f"{theirs}{their}", transpose=True)
        take("norm_f", "transformer.ln_f")
    elif arch == "gpt_neox":
        out["wte.weight"] = state["gpt_neox.embed_in.weight"]
        nh, hs = config.n_head, config.head_size
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"gpt_neox.layers.{i}."
            take(f"{ours}norm_1", f"{theirs}input_layernorm")
            take(f"{ours}norm_2", f"{theirs}post_attention_layernorm")
            for our, their in NEOX_LINEARS:
                take(f"{ours}{our}", f"{theirs}{their}")
                if our == "attn.qkv":
                    for leaf in ("weight", "bias") if config.bias else ("weight",):
                        out[f"{ours}{our}.{leaf}"] = _per_kind(out[f"{ours}{our}.{leaf}"], nh, hs)
        take("norm_f", "gpt_neox.final_layer_norm")
    else:
        out["wte.weight"] = state["model.embed_tokens.weight"]
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
            out[f"{ours}norm_1.weight"] = state[f"{theirs}input_layernorm.weight"]
            out[f"{ours}norm_2.weight"] = state[f"{theirs}post_attention_layernorm.weight"]
            for leaf in ("weight", "bias") if config.bias else ("weight",):
                parts = [state[f"{theirs}self_attn.{p}_proj.{leaf}"] for p in "qkv"]
                out[f"{ours}attn.qkv.{leaf}"] = torch.cat(parts, dim=0)
            for our, their in LLAMA_LINEARS:
                take(f"{ours}{our}", f"{theirs}{their}")
        out["norm_f.weight"] = state["model.norm.weight"]
    out["lm_head.weight"] = out["wte.weight"] if config.tie_embeddings else state[head_name(arch)]
    return out


def expected_hf_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors a transformers folder for ``config`` holds (biases included)."""
    with torch.device("meta"):
        gpt = GPT(GPTConfig(**{**config.to_dict(), "bias": True}))
    state = {name: tensor for name, tensor in gpt.state_dict().items()}
    return {name: tuple(t.shape) for name, t in _renamed(state, gpt.config).items()}


# --- writing ---------------------------------------------------------------------------------------
def save_hf(
    model: GPT, tokenizer: Tokenizer | None, directory: str | Path, max_shard_size: int = DEFAULT_MAX_SHARD_BYTES
) -> list[str]:
    """Write the transformers folder of ``model`` (and its tokenizer) to ``directory``; the file names written.

    Plain writes; ``lightningllm export`` makes the folder appear whole. Raises ``ValueError`` for a
    shape transformers cannot express (see ``architecture``).
    """
    from safetensors.torch import save

    from lightningllm.interop.hf_tokenizer import save_hf_tokenizer

    config = model.config
    dtype = model.lm_head.weight.dtype
    data = hf_config(config, tokenizer, dtype)
    if max_shard_size < 1:
        raise ValueError(f"max_shard_size must be a positive number of bytes, got {max_shard_size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state(model.state_dict(), config)
    shards = _shards(tensors, max_shard_size)
    written = [CONFIG_FILE, GENERATION_CONFIG_FILE]
    (directory / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    generation = {key: data[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (directory / GENERATION_CONFIG_FILE).write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    if len(shards) == 1:
        (directory / WEIGHTS_FILE).write_bytes(save(shards[0], metadata={"format": "pt"}))
        written.append(WEIGHTS_FILE)
    else:
        weight_map = {}
        for number, shard in enumerate(shards, start=1):
            name = shard_name(number, len(shards))
            (directory / name).write_bytes(save(shard, metadata={"format": "pt"}))
            weight_map.update(dict.fromkeys(shard, name))
            written.append(name)
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / WEIGHTS_INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        written.append(WEIGHTS_INDEX_FILE)
    if tokenizer is not None:
        written += save_hf_tokenizer(tokenizer, directory, model_max_length=config.block_size)
    return written


def shard_name(number: int, count: int) -> str:
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def _shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors in order, cut into groups of at most ``max_bytes`` (a larger tensor gets a shard of its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


# --- reading ---------------------------------------------------------------------------------------
def is_hf_folder(directory: str | Path) -> bool:
    """Whether ``directory`` holds a transformers ``config.json`` (one with ``model_type``), not our own."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "model_type" in data


def load_hf(directory: str | Path) -> tuple[GPT, Tokenizer | None]:
    """The ``GPT`` (CPU, float32, in training mode as from ``GPT.from_pretrained``) and tokenizer of a transformers
    folder of one of the three architectures.

    The folder's ``tokenizer.json``, when there is one, must be a lightningllm tokenizer (ours carry
    the special tokens training needs). Names and shapes in the safetensors headers are checked
    against the config before any weight is read.

    Raises:
        FileNotFoundError: the folder, its config.json or its weights are missing.
        ValueError: a file is malformed or does not fit the others, or the model is of another architecture.
    """
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {directory} is not a transformers model folder")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{config_path} must hold a JSON object")
    tokenizer = None
    tokenizer_path = directory / "tokenizer.json"
    if tokenizer_path.is_file():
        tokenizer = Tokenizer.from_file(tokenizer_path)  # a foreign tokenizer is a one-line ValueError
    config = gpt_config(data, config_path, tokenizer.vocab_size if tokenizer is not None else None)
    files = _weight_files(directory)
    header: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for file in files:
        for name, entry in read_header(file).items():
            header[name] = (file, entry.shape)
    expected = expected_hf_shapes(config)
    arch = architecture(config)
    if arch == "gpt_neox" and "lm_head.weight" in header:  # how transformers 5 names embed_out
        header.setdefault("embed_out.weight", header.pop("lm_head.weight"))
        renamed = {"lm_head.weight": "embed_out.weight"}
    else:
        renamed = {}
    if config.tie_embeddings:
        header.pop(head_name(arch), None)  # transformers ties it to the embedding on load
    optional = {name for name in expected if name.endswith(".bias")}
    missing = sorted(set(expected) - set(header) - optional)
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{directory}: its weights do not fit its {config_path.name} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, shape in expected.items():
        if name in header and header[name][1] != shape:
            raise ValueError(
                f"{header[name][0]}: tensor {name} has shape {list(header[name][1])}, but {config_path} needs "
                f"{list(shape)}: the files do not belong together"
            )
    state: dict[str, torch.Tensor] = {}
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    if renamed.get(name, name) in expected:
                        state[renamed.get(name, name)] = handle.get_tensor(name)
    except SafetensorError as err:
        raise ValueError(f"cannot read the weights of {directory}: {err}") from None
    biases = [name for name in expected if name.endswith(".bias")]
    present = [name for name in biases if name in state]
    if not present or all(not state[name].any() for name in present):
        config = GPTConfig(**{**config.to_dict(), "bias": False})  # all-zero biases compute nothing
    else:
        for name in biases:  # e.g. attention_bias without mlp_bias: the missing ones are zero
            if name not in state:
                state[name] = torch.zeros(expected[name], dtype=state[present[0]].dtype)
    model = GPT(config)
    model.load_state_dict(from_hf_state(state, config))  # cast to float32, as every GPT is built
    return model, tokenizer


def _weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a folder: ``model.safetensors``, or the shards its index names."""
    single, index_path = directory / WEIGHTS_FILE, directory / WEIGHTS_INDEX_FILE
    if single.is_file():
        return [single]
    if not index_path.is_file():
        names = ", ".join(sorted(p.name for p in directory.glob("*.bin"))) or "none"
        raise FileNotFoundError(
            f"{directory} has no {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} (PyTorch .bin weights: {names}; "
            "only safetensors are read, as they run no code)"
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        names = sorted(set(weight_map.values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{index_path} is not a safetensors index (a JSON object with a weight_map)") from None
    files = []
    for name in names:
        path = directory / name
        if not isinstance(name, str) or Path(name).name != name or not path.is_file():
            raise FileNotFoundError(f"{index_path} names the shard {name}, which is not in {directory}")
        files.append(path)
    return files
