"""Sampling from a GPT: temperature, top-k, top-p, per-sequence EOS, batched prompts, KV cache.

``generate(model, prompts)`` takes a list of token-id lists of any lengths, left-pads them into one
batch, prefills the KV cache once and then decodes one token per step. By default
(``max_new_tokens=None``) each prompt gets up to ``DEFAULT_NEW_TOKENS`` new tokens, fewer when the
context has less room after it. ``temperature=0`` is greedy. Sampling turns one uniform draw per
row and step into a token through the row's cumulative distribution; with a ``seed`` each row draws
from its own generator seeded with it, so a prompt's completion is the same whichever prompts share
its batch (as vLLM's per-request seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lightningllm.model.gpt import GPT

DEFAULT_NEW_TOKENS = 128
"""New tokens per prompt when ``max_new_tokens`` is None (fewer when the context has less room)."""

PROMPT_TOO_LONG = ("error", "crop")
"""What ``generate`` does with a prompt that leaves no room for the new tokens: raise, or keep its end."""

Generators = torch.Generator | Sequence[torch.Generator] | None


def check_sampling(
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    on_prompt_too_long: str = "error",
    prefix: str = "",
) -> None:
    """Raise a one-line ``ValueError`` naming the first invalid sampling option.

    ``prefix`` names the options as a config does (``"model."``); then ``None`` reads ``null``.
    """
    none = "null" if prefix else "None"
    if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise ValueError(
            f"{prefix}max_new_tokens must be an integer >= 1, or {none} for up to {DEFAULT_NEW_TOKENS} tokens "
            f"that fit the context (got {max_new_tokens!r})"
        )
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"{prefix}temperature must be a finite number >= 0, 0 for greedy (got {temperature!r})")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"{prefix}top_k must be a positive integer or {none} (got {top_k!r})")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"{prefix}top_p must be in (0, 1], or {none} (got {top_p!r})")
    if on_prompt_too_long not in PROMPT_TOO_LONG:
        raise ValueError(f"{prefix}on_prompt_too_long must be 'error' or 'crop' (got {on_prompt_too_long!r})")


def check_seed(seed: int | None, name: str = "seed") -> None:
    """Raise a one-line ``ValueError`` unless ``seed`` is None or an integer ``torch.Generator`` accepts."""
    if seed is not None and (not isinstance(seed, int) or not -(2**63) <= seed < 2**64):
        raise ValueError(f"{name} must be an integer from -2**63 to 2**64 - 1 (got {seed!r})")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Generators = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, V). Returns (B,) ids.

    Args:
        generator: one generator the rows draw from in turn, or a sequence of B generators, one per
            row, each drawing once per call; None draws from torch's global CPU generator.
    """
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already cover top_p; the best always stays
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return _invert(logits.softmax(dim=-1), _uniforms(logits.size(0), generator))


def _uniforms(rows: int, generator: Generators) -> torch.Tensor:
    """(rows,) float64 draws in [0, 1): from one generator, one generator per row, or the global CPU one."""
    if generator is None or isinstance(generator, torch.Generator):
        device = "cpu" if generator is None else generator.device
        return torch.rand(rows, generator=generator, device=device, dtype=torch.float64)
    if len(generator) != rows:
        raise ValueError(f"got {len(generator)} generators for {rows} rows: pass one per row")
    return torch.cat([torch.rand(1, generator=g, device=g.device, dtype=torch.float64).cpu() for g in generator])


def _invert(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The token whose cumulative-probability interval holds each row's draw: (B, V), (B,) -> (B,) ids.

    One draw per row (not one per token) is what keeps per-row generators cheap; a zero-probability
    token has an empty interval and is never picked.
    """
    dtype = torch.float32 if probs.device.type == "mps" else torch.float64  # MPS has no float64
    cdf = probs.to(dtype).cumsum(dim=-1)  # (B, V)
    total = cdf[:, -1]  # (B,), 1 up to rounding
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError(
            "the model's next-token probabilities are not finite (NaN or inf logits): its weights are broken"
        )
    target = uniforms.to(device=probs.device, dtype=dtype) * total
    target = torch.minimum(target, total.nextafter(torch.zeros_like(total)))  # stays below the last interval's end
    return torch.searchsorted(cdf, target[:, None], right=True).squeeze(-1)


def fit_to_context(
    lengths: Sequence[int], max_new_tokens: int | None, block_size: int, on_prompt_too_long: str = "error"
) -> list[tuple[int, int]]:
    """(prompt tokens kept, new tokens) for each prompt length, so that the two fit ``block_size``.

    An explicit ``max_new_tokens`` is every prompt's; a prompt too long for it raises, or with
    ``"crop"`` keeps its last tokens. ``None`` gives each prompt up to ``DEFAULT_NEW_TOKENS``, fewer
    when the context has less room after it; with ``"crop"``, a prompt that leaves less room than
    ``min(DEFAULT_NEW_TOKENS, block_size // 2)`` keeps its last tokens so that many fit.
    """
    if block_size < 2:
        raise ValueError(f"the model's block_size {block_size} leaves no room for a prompt and a new token")
    if max_new_tokens is not None:
        budget = block_size - max_new_tokens
        if budget < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in block_size {block_size}")
        if max(lengths) > budget and on_prompt_too_long != "crop":
            raise ValueError(
                f"a prompt of {max(lengths)} tokens plus max_new_tokens={max_new_tokens} exceeds the model's "
                f"block_size {block_size}: shorten the prompt, lower max_new_tokens or set on_prompt_too_long to crop"
            )
        return [(min(length, budget), max_new_tokens) for length in lengths]
    plans = []
    least = min(DEFAULT_NEW_TOKENS, block_size // 2)
    for length in lengths:
        room = block_size - length
        if on_prompt_too_long == "crop":
            room = max(room, least)
        elif room < 1:
            raise ValueError(
                f"a prompt of {length} tokens fills the model's block_size {block_size} and leaves no room for "
                "new tokens: shorten the prompt or set on_prompt_too_long to crop"
            )
        new = min(DEFAULT_NEW_TOKENS, room)
        plans.append((min(length, block_size - new), new))
    return plans


@torch.inference_mode()
def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int | None = None,
    generator: Generators = None,
    use_kv_cache: bool = True,
    on_prompt_too_long: str = "error",
) -> list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns only the new tokens.

    Args:
        prompts: token-id lists (any lengths) or a (B, T) tensor.
        max_new_tokens: new tokens per prompt; None: up to ``DEFAULT_NEW_TOKENS`` (128), fewer when
            the context has less room after the prompt (see ``fit_to_context``).
        temperature: 0 means greedy decoding.
        eos_id: a sequence stops (and its EOS is kept) when it emits this id.
        seed: each prompt samples from its own CPU generator seeded with it: the same prompt and seed
            give the same tokens in any batch (up to floating-point rounding of the batched forward).
        generator: instead of ``seed``, one generator for the whole batch (rows then draw from it in
            turn, so they depend on each other), or a sequence with one per prompt.
        use_kv_cache: decode incrementally (fast) or re-run the whole sequence per token.
        on_prompt_too_long: ``"error"`` raises when prompt + new tokens exceed ``block_size``;
            ``"crop"`` keeps the last tokens of the prompt that fit.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p, on_prompt_too_long)
    check_seed(seed)
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator to generate, not both")
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    prompts = [list(p) for p in prompts]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one non-empty prompt")
    block_size = model.config.block_size
    plans = fit_to_context([len(p) for p in prompts], max_new_tokens, block_size, on_prompt_too_long)
    prompts = [p[len(p) - kept :] for p, (kept, _) in zip(prompts, plans, strict=True)]
    limits = [new for _, new in plans]
    if seed is not None:
        generator = [torch.Generator().manual_seed(seed) for _ in prompts]
    elif generator is not None and not isinstance(generator, torch.Generator) and len(generator) != len(prompts):
        raise ValueError(f"got {len(generator)} generators for {len(prompts)} prompts: pass one per prompt")

    was_training = model.training
    model.eval()
    new = [[] for _ in prompts]
    pending = list(range(len(prompts)))
    try:
        # Rows share one left-padded layout, so a short prompt next to a long one may run out of
        # positions before its own limit: those rows go on in a fresh batch of their own.
        while pending:
            rows = [prompts[r] + new[r] for r in pending]
            left = [limits[r] - len(new[r]) for r in pending]
            steps = min(max(left), block_size - max(len(row) for row in rows))
            streams = generator
            if generator is not None and not isinstance(generator, torch.Generator):
                streams = [generator[r] for r in pending]  # each row keeps its own stream
            decoded = _decode(model, rows, left, steps, temperature, top_k, top_p, eos_id, streams, use_kv_cache)
            for r, ids in zip(pending, decoded, strict=True):
                new[r].extend(ids)
            pending = [r for r in pending if len(new[r]) < limits[r] and (eos_id is None or new[r][-1] != eos_id)]
    finally:
        model.train(was_training)
    return new


def _decode(
    model: GPT,
    prompts: list[list[int]],
    limits: list[int],
    steps: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    eos_id: int | None,
    generator: Generators,
    use_kv_cache: bool,
) -> list[list[int]]:
    """One batched pass of ``steps`` tokens; each row keeps up to its own limit, through its first EOS."""
    device = model.lm_head.weight.device
    B, T = len(prompts), max(len(p) for p in prompts)
    pad_id = 0 if eos_id is None else eos_id
    idx = torch.full((B, T), pad_id, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        idx[row, T - len(prompt) :] = torch.tensor(prompt, device=device)
    pad = torch.tensor([T - len(p) for p in prompts], device=device)
    pad = pad if pad.any() else None
    limit = torch.tensor(limits, device=device)
    may_stop_early = eos_id is not None or min(limits) < steps  # else no host sync per step

    out = torch.empty((B, 0), dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    try:
        if use_kv_cache:
            model.setup_kv_cache(B, T + steps)
            logits = model(idx, start=0, pad=pad)[:, -1]
        for step in range(steps):
            if not use_kv_cache:
                logits = model(torch.cat([idx, out], dim=1), pad=pad)[:, -1]
            next_id = sample_next(logits, temperature, top_k, top_p, generator).masked_fill(finished, pad_id)
            if eos_id is not None:
                finished |= next_id == eos_id
            finished |= limit <= step + 1
            out = torch.cat([out, next_id[:, None]], dim=1)
            if may_stop_early and bool(finished.all()):
                break
            if use_kv_cache and step + 1 < steps:
                logits = model(next_id[:, None], start=T + step, pad=pad)[:, -1]
    finally:
        if use_kv_cache:
            model.clear_kv_cache()

    results = []
    for row, n in zip(out.tolist(), limits, strict=True):
        row = row[:n]
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]
        results.append(row)
    return results
