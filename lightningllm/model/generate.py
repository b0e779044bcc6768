"""Sampling from a GPT: temperature, top-k, top-p, per-sequence EOS, batched prompts, KV cache.

``generate(model, prompts, max_new_tokens=...)`` takes a list of token-id lists of any lengths,
left-pads them into one batch, prefills the KV cache once and then decodes one token per step.
``temperature=0`` is greedy; a seeded ``torch.Generator`` makes sampling reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lightningllm.model.gpt import GPT


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, V). Returns (B,) ids."""
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
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    use_kv_cache: bool = True,
    on_prompt_too_long: str = "error",
) -> list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns only the new tokens.

    Args:
        prompts: token-id lists (any lengths) or a (B, T) tensor.
        temperature: 0 means greedy decoding.
        eos_id: a sequence stops (and its EOS is kept) when it emits this id.
        seed / generator: make sampling reproducible.
        use_kv_cache: decode incrementally (fast) or re-run the whole sequence per token.
        on_prompt_too_long: ``"error"`` raises when prompt + new tokens exceed ``block_size``;
            ``"crop"`` keeps the last tokens of the prompt that fit.
    """
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    prompts = [list(p) for p in prompts]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one non-empty prompt")
    block_size = model.config.block_size
    budget = block_size - max_new_tokens
    if budget < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in block_size {block_size}")
    longest = max(len(p) for p in prompts)
    if longest > budget:
        if on_prompt_too_long != "crop":
            raise ValueError(
                f"prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the model's "
                f"block_size {block_size}; shorten the prompt or pass on_prompt_too_long='crop'"
            )
        prompts = [p[-budget:] for p in prompts]
    if generator is None and seed is not None:
        generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)

    device = model.lm_head.weight.device
    B, T = len(prompts), max(len(p) for p in prompts)
    pad_id = 0 if eos_id is None else eos_id
    idx = torch.full((B, T), pad_id, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        idx[row, T - len(prompt) :] = torch.tensor(prompt, device=device)
    pad = torch.tensor([T - len(p) for p in prompts], device=device)
    pad = pad if pad.any() else None

    was_training = model.training
    model.eval()
    out = torch.empty((B, 0), dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    try:
        if use_kv_cache:
            model.setup_kv_cache(B, T + max_new_tokens)
            logits = model(idx, start=0, pad=pad)[:, -1]
        for step in range(max_new_tokens):
            if not use_kv_cache:
                logits = model(torch.cat([idx, out], dim=1), pad=pad)[:, -1]
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)
                finished |= next_id == eos_id
            out = torch.cat([out, next_id[:, None]], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
            if use_kv_cache and step + 1 < max_new_tokens:
                logits = model(next_id[:, None], start=T + step, pad=pad)[:, -1]
    finally:
        if use_kv_cache:
            model.clear_kv_cache()
        model.train(was_training)

    results = []
    for row in out.tolist():
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]
        results.append(row)
    return results
