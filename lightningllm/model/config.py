"""GPTConfig: the one dataclass that describes a model's shape, with named presets and budget sizing.

Every layer choice is a plain string, so a config round-trips through YAML and JSON unchanged.
``GPTConfig.from_name("llama-20m", vocab_size=8192)`` builds a preset with overrides, and
``GPTConfig.for_budget(2_000_000, vocab_size=4096, block_size=256)`` picks the widest, deepest
shape whose exact parameter count stays within a budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

NormKind = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "swiglu"]
PosEmbKind = Literal["learned", "sinusoidal", "rope"]


@dataclass
class GPTConfig:
    """Shape and layer choices of a decoder-only transformer."""

    # --- size ---
    vocab_size: int | None = None
    """Token ids the tokenizer produces. None until set: ``LitGPT`` takes it from the data module's
    tokenizer; building a ``GPT`` needs it."""
    padding_multiple: int = 64
    """The embedding and output head cover ``padded_vocab_size``: ``vocab_size`` rounded up to this
    multiple, so their matmuls hit aligned shapes (ids past the tokenizer's are never produced)."""
    block_size: int = 256
    """Longest sequence (context length) the model accepts."""
    n_layer: int = 6
    """Number of transformer blocks."""
    n_head: int = 6
    """Number of query heads per attention layer."""
    n_embd: int = 384
    """Width of the residual stream; must be divisible by ``n_head``."""
    n_kv_head: int | None = None
    """Key/value heads: ``n_head`` (default) is multi-head, fewer is grouped-query, 1 is multi-query."""
    mlp_hidden: int | None = None
    """Hidden width of the MLP; derived from ``mlp_ratio`` when not given."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``n_embd`` (for SwiGLU, 2/3 of it, rounded to 8)."""

    # --- layer choices ---
    norm: NormKind = "layernorm"
    """Normalization layer: ``layernorm`` or ``rmsnorm``."""
    norm_eps: float = 1e-5
    """Epsilon of the normalization layers."""
    mlp: MLPKind = "gelu"
    """Feed-forward kind: ``gelu`` (GPT-2) or ``swiglu`` (Llama)."""
    pos_emb: PosEmbKind = "learned"
    """Position information: ``learned`` table, fixed ``sinusoidal`` table, or ``rope`` rotations."""
    rope_base: float = 10000.0
    """Base of the RoPE frequencies."""
    bias: bool = True
    """Biases in linear layers and LayerNorm (GPT-2 has them, Llama does not)."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches."""
    tie_embeddings: bool = True
    """Share the token embedding matrix with the output head."""

    # --- initialization ---
    init_std: float = 0.02
    """Std of the normal init; residual output projections get ``init_std / sqrt(2 * n_layer)``."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "padding_multiple", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if name == "vocab_size" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.n_kv_head < 1 or self.n_head % self.n_kv_head:
            raise ValueError(f"GPTConfig.n_kv_head ({self.n_kv_head}) must be >= 1 and divide n_head ({self.n_head})")
        if self.pos_emb == "rope" and self.head_size % 2:
            raise ValueError(
                f"GPTConfig: pos_emb rope needs an even head size, and n_embd / n_head = {self.n_embd} / "
                f"{self.n_head} = {self.head_size}"
            )
        choices = {"norm": NormKind, "mlp": MLPKind, "pos_emb": PosEmbKind}
        for name, kind in choices.items():
            allowed = kind.__args__
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.mlp_hidden is None:
            hidden = self.mlp_ratio * self.n_embd
            if self.mlp == "swiglu":  # keep the parameter count of a 4x GELU MLP
                hidden = 8 * math.ceil(hidden * 2 / 3 / 8)
            self.mlp_hidden = int(hidden)
        if self.mlp_hidden < 1:
            raise ValueError(f"GPTConfig.mlp_hidden must be positive, got {self.mlp_hidden}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and the output head: ``vocab_size`` rounded up to ``padding_multiple``."""
        if self.vocab_size is None:
            raise ValueError(
                "GPTConfig.vocab_size is not set: give it, or train with a data module whose tokenizer sets it"
            )
        return self.padding_multiple * math.ceil(self.vocab_size / self.padding_multiple)

    # --- presets ---
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> GPTConfig:
        """Build a named preset (see ``PRESETS``), replacing any field with ``overrides``."""
        if name not in PRESETS:
            raise ValueError(f"unknown GPTConfig preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s) {unknown}")
        return cls(**data)

    # --- parameter counting, exact and without building the model ---
    def param_breakdown(self) -> dict[str, int]:
        """Exact parameter counts by part; tied weights are counted once (under embeddings)."""
        d, hs = self.n_embd, self.head_size
        norm = d * (2 if self.norm == "layernorm" and self.bias else 1)
        qkv = d * (self.n_head + 2 * self.n_kv_head) * hs + (self.n_head + 2 * self.n_kv_head) * hs * self.bias
        proj = d * d + d * self.bias
        h = self.mlp_hidden
        if self.mlp == "swiglu":
            mlp = 2 * (d * h + h * self.bias) + h * d + d * self.bias
        else:
            mlp = d * h + h * self.bias + h * d + d * self.bias
        vocab = self.padded_vocab_size
        embeddings = vocab * d + (self.block_size * d if self.pos_emb == "learned" else 0)
        head = 0 if self.tie_embeddings else vocab * d
        return {
            "embeddings": embeddings,
            "attention": self.n_layer * (qkv + proj),
            "mlp": self.n_layer * mlp,
            "norms": (2 * self.n_layer + 1) * norm,
            "head": head,
        }

    def num_params(self) -> int:
        return sum(self.param_breakdown().values())

    def flops_per_token(self, context: int | None = None) -> int:
        """Training FLOPs per token: 6 per matmul weight plus attention (PaLM appendix B)."""
        t = context or self.block_size
        non_embedding = self.num_params() - self.param_breakdown()["embeddings"]
        matmul = non_embedding + self.padded_vocab_size * self.n_embd  # the head matmul runs even when tied
        return 6 * matmul + 12 * self.n_layer * self.n_embd * t

    @classmethod
    def for_budget(
        cls,
        max_params: int,
        vocab_size: int,
        block_size: int,
        head_size: int = 64,
        min_head_size: int = 16,
        **overrides: Any,
    ) -> GPTConfig:
        """The best-shaped config whose exact parameter count is at most ``max_params``.

        Searches depth and width (a multiple of the head size), preferring the shape with
        the most non-embedding parameters and, among near-equals, an aspect ratio
        ``n_embd / n_layer`` within 24-96 (the range small GPTs train well at). The
        vocabulary often dominates tiny budgets, so embeddings are counted exactly.
        """
        best: tuple[float, GPTConfig] | None = None
        for n_layer in range(1, 49):
            for hs in sorted({head_size, 32, min_head_size}, reverse=True):
                if hs < min_head_size:
                    continue
                for n_head in range(1, 65):
                    n_embd = n_head * hs
                    try:
                        cfg = cls(
                            vocab_size=vocab_size,
                            block_size=block_size,
                            n_layer=n_layer,
                            n_head=n_head,
                            n_embd=n_embd,
                            **overrides,
                        )
                    except ValueError:
                        continue
                    total = cfg.num_params()
                    if total > max_params:
                        break
                    body = total - cfg.param_breakdown()["embeddings"] - cfg.param_breakdown()["head"]
                    aspect = n_embd / n_layer
                    penalty = abs(math.log(aspect / 48)) if not 24 <= aspect <= 96 else 0.0
                    score = body * math.exp(-0.5 * penalty) + 1e-3 * total
                    if best is None or score > best[0]:
                        best = (score, cfg)
        if best is None:
            raise ValueError(
                f"no GPT shape fits {max_params:,} parameters with vocab_size={vocab_size} "
                f"(the embedding table alone needs {vocab_size * min_head_size:,})"
            )
        return best[1]


_GPT2 = {"norm": "layernorm", "mlp": "gelu", "pos_emb": "learned", "bias": True, "tie_embeddings": True}
_LLAMA = {"norm": "rmsnorm", "mlp": "swiglu", "pos_emb": "rope", "bias": False, "tie_embeddings": True}

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny and fast: every test uses it.
    "debug": {"vocab_size": 128, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32, **_GPT2},
    # GPT-2-style small sizes, counted with the BPE vocabularies they are meant for.
    "gpt-1m": {"vocab_size": 4096, "block_size": 256, "n_layer": 5, "n_head": 4, "n_embd": 96, **_GPT2},  # 0.98M
    "gpt-2m": {"vocab_size": 4096, "block_size": 256, "n_layer": 7, "n_head": 4, "n_embd": 128, **_GPT2},  # 1.95M
    "gpt-10m": {"vocab_size": 8192, "block_size": 512, "n_layer": 8, "n_head": 6, "n_embd": 288, **_GPT2},  # 10.5M
    "gpt-30m": {"vocab_size": 16384, "block_size": 512, "n_layer": 10, "n_head": 7, "n_embd": 448, **_GPT2},  # 31.7M
    # The exact GPT-2 small shape (124,439,808 parameters at vocab 50257, unpadded).
    "gpt2-124m": {
        "vocab_size": 50257,
        "padding_multiple": 1,
        "block_size": 1024,
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        **_GPT2,
    },
    # Llama-style: RMSNorm, SwiGLU, RoPE, grouped-query attention.
    "llama-20m": {
        "vocab_size": 8192,
        "block_size": 512,
        "n_layer": 11,
        "n_head": 8,
        "n_kv_head": 2,
        "n_embd": 384,
        **_LLAMA,
    },
}
