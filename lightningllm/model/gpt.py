"""GPT: token ids in, next-token logits out. Pure PyTorch, no Lightning.

``GPT(config)(idx)`` returns logits (B, T, V); ``GPT(config)(idx, targets)`` returns the mean
cross-entropy instead, computed in chunks so the full (B, T, V) float32 logits never exist at
once (the vocabulary dominates memory for small models). For fast decoding, ``setup_kv_cache``
preallocates keys and values and ``forward(idx, start=...)`` feeds only the new tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightningllm.model.config import GPTConfig
from lightningllm.model.layers import Block, KVCache, build_norm, rope_cache, sinusoidal_table
from lightningllm.model.pretrained import load_pretrained, save_pretrained

IGNORE_INDEX = -100
"""Target id that is left out of the loss (padding, prompt tokens in instruction data)."""


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.activation_checkpointing = False
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        if config.pos_emb == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        elif config.pos_emb == "sinusoidal":
            self.register_buffer("wpe_table", sinusoidal_table(config.block_size, config.n_embd), persistent=False)
        elif config.pos_emb == "rope":
            cos, sin = rope_cache(config.block_size, config.head_size, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = build_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    # --- initialization --------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, init_std) weights, zero biases, residual projections scaled by 1/sqrt(2L)."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    # --- forward ---------------------------------------------------------------------------
    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        start: int = 0,
        pad: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) for token ids ``idx`` (B, T), or the mean loss when ``targets`` is given.

        Args:
            idx: (B, T) token ids at positions ``start .. start + T``.
            targets: (B, T) next-token ids; ``IGNORE_INDEX`` entries are left out of the loss.
            start: position of ``idx[:, 0]``; non-zero only when decoding with the KV cache.
            pad: (B,) number of left-padding tokens per row, for batched prompts of unequal
                length. Padded keys are masked and each row's positions start after its padding.
        """
        B, T = idx.shape
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens is longer than the model's block_size {self.config.block_size}"
            )
        positions = torch.arange(start, start + T, device=idx.device)  # (T,)
        if pad is not None:
            positions = (positions[None, :] - pad[:, None]).clamp(min=0)  # (B, T)
        x = self.wte(idx)  # (B, T, C)
        if self.config.pos_emb == "learned":
            x = x + self.wpe(positions)
        elif self.config.pos_emb == "sinusoidal":
            x = x + self.wpe_table[positions].to(x.dtype)
        rope = None
        if self.config.pos_emb == "rope":
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]  # (T, hs/2) or (B, T, hs/2)
            rope = (cos.unsqueeze(-3), sin.unsqueeze(-3)) if pad is not None else (cos, sin)
        x = self.drop(x)
        mask = None if start == 0 and pad is None else self._attention_mask(T, start, pad, idx.device)
        for block in self.blocks:
            if self.activation_checkpointing and self.training:
                x = checkpoint(block, x, rope, mask, start, use_reentrant=False)
            else:
                x = block(x, rope, mask, start)
        x = self.norm_f(x)
        if targets is None:
            return self.lm_head(x)
        return self._chunked_loss(x, targets)

    @staticmethod
    def _attention_mask(T: int, start: int, pad: torch.Tensor | None, device) -> torch.Tensor:
        """(B or 1, 1, T, start + T) bool: query at index start + i sees keys at indices <= start + i."""
        key_index = torch.arange(start + T, device=device)
        query_index = torch.arange(start, start + T, device=device)
        mask = (key_index[None, :] <= query_index[:, None])[None, None]  # (1, 1, T, S)
        if pad is not None:
            mask = mask & (key_index[None, None, None, :] >= pad[:, None, None, None])  # (B, 1, T, S)
            # A padded query row would see no key at all; let it see itself so softmax stays finite.
            mask = mask | (key_index[None, None, None, :] == query_index[None, None, :, None])
        return mask

    def _chunked_loss(
        self, x: torch.Tensor, targets: torch.Tensor, chunk_tokens: int = 8192, min_elements: int = 2**24
    ) -> torch.Tensor:
        """Mean cross-entropy over non-ignored targets without materializing all logits at once; 0 when every
        target is ignored (a padding-only share of a step), so it adds nothing to the gradient instead of NaN."""
        x, targets = x.reshape(-1, x.size(-1)), targets.reshape(-1)
        if x.size(0) * self.config.padded_vocab_size <= min_elements:  # small enough: one plain call is fastest
            logits = self.lm_head(x).float()
            summed = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
            return summed / (targets != IGNORE_INDEX).sum().clamp(min=1)  # no target at all: 0, not NaN
        total = x.new_zeros((), dtype=torch.float32)
        for xs, ts in zip(x.split(chunk_tokens), targets.split(chunk_tokens), strict=True):
            total = total + checkpoint(_summed_cross_entropy, self.lm_head, xs, ts, use_reentrant=False)
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)

    # --- KV cache --------------------------------------------------------------------------
    def setup_kv_cache(self, batch_size: int, max_seq_len: int | None = None) -> None:
        """Preallocate a KV cache for decoding ``batch_size`` sequences of up to ``max_seq_len`` tokens."""
        max_seq_len = max_seq_len or self.config.block_size
        param = self.lm_head.weight
        for block in self.blocks:
            block.attn.kv_cache = KVCache(
                batch_size,
                self.config.n_kv_head,
                max_seq_len,
                self.config.head_size,
                param.device,
                param.dtype,
            )

    def clear_kv_cache(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None

    # --- helpers ---------------------------------------------------------------------------
    def num_params(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def param_breakdown(self) -> dict[str, int]:
        """Parameter counts by part, measured on the live modules; sums to ``num_params()``."""
        seen: set[int] = set()
        parts = {"embeddings": 0, "attention": 0, "mlp": 0, "norms": 0, "head": 0}
        for name, param in self.named_parameters(remove_duplicate=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if name.startswith(("wte", "wpe")):
                parts["embeddings"] += param.numel()
            elif ".attn." in name:
                parts["attention"] += param.numel()
            elif ".mlp." in name:
                parts["mlp"] += param.numel()
            elif "norm" in name:
                parts["norms"] += param.numel()
            elif name.startswith("lm_head"):
                parts["head"] += param.numel()
            else:  # a new kind of parameter must get a part of its own, not hide in another
                raise ValueError(f"parameter {name} belongs to no part of the breakdown")
        return parts

    def breakdown_table(self) -> str:
        """A printable table of the parameter breakdown with shares of the total."""
        parts = self.param_breakdown()
        total = sum(parts.values())
        lines = [f"{'part':<12}{'params':>14}{'share':>9}"]
        for name, count in parts.items():
            lines.append(f"{name:<12}{count:>14,}{100 * count / total:>8.1f}%")
        lines.append(f"{'total':<12}{total:>14,}{100.0:>8.1f}%")
        return "\n".join(lines)

    # --- portable format: config.json + model.safetensors (lightningllm.model.pretrained) -------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (no pickle) to ``directory``."""
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> GPT:
        """Load a directory written by ``save_pretrained``; reads tensors only, never runs pickled code.

        Both files are checked against each other before the model is built: a malformed, truncated
        or mismatched file is a one-line ``ValueError`` naming it (``FileNotFoundError`` if missing).
        """
        return load_pretrained(cls, directory, map_location)


def _summed_cross_entropy(head: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(x).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
