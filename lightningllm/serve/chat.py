"""``lightningllm chat``: talk to a model in the terminal, its answers streamed as they are generated.

Each turn is rendered in the chat format of ``lightningllm.data.instruct`` and continued by the
serving ``Engine`` until the model ends its turn (``<|end|>`` or EOS) or ``--max_tokens``. The
conversation is kept within the context window: when the next prompt would not leave room for an
answer, the oldest turns are dropped (a system message stays) and the chat says so. ``/reset``
starts over, ``/quit`` (or end of input) leaves.
"""

from __future__ import annotations

import sys
from typing import TextIO

from lightningllm.data.instruct import ASSISTANT, END, chat_segments
from lightningllm.serve.engine import Engine, Request


def chat(
    source: str,
    system: str | None = None,
    max_tokens: int = 128,
    temperature: float = 0.8,
    top_p: float | None = 0.95,
    seed: int | None = None,
    quantize: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> None:
    """Run the chat loop on the model of ``source`` (a checkpoint or an export folder); ``quantize`` ``int8``
    runs it with int8 block weights."""
    from lightningllm.checkpoint import load_source

    model, tokenizer = load_source(source, quantize)
    if tokenizer is None:
        raise ValueError(f"{source} holds no tokenizer, and a chat needs one")
    block_size = model.config.block_size
    if not 1 <= max_tokens < block_size:
        raise ValueError(
            f"--max_tokens must be from 1 to {block_size - 1} (the context is {block_size}), got {max_tokens}"
        )
    engine = Engine(model.eval(), tokenizer, max_batch=1).start()
    stop_ids = tuple(i for i in (tokenizer.eos_id, tokenizer.hf.token_to_id(END)) if i is not None)
    head = [{"role": "system", "content": system}] if system else []
    turns: list[dict] = []
    print("chat: /reset starts over, /quit leaves", file=stdout, flush=True)
    try:
        for line in stdin:
            text = line.rstrip("\n")
            if text.strip() == "/quit":
                break
            if text.strip() == "/reset":
                turns = []
                print("(conversation reset)", file=stdout, flush=True)
                continue
            if not text.strip():
                continue
            turns.append({"role": "user", "content": text})
            ids, dropped = _fit(tokenizer, head, turns, block_size - max_tokens)
            if ids is None:
                turns.pop()
                print("(that message alone is longer than the context: shorten it)", file=stdout, flush=True)
                continue
            if dropped:
                turns = turns[dropped:]
                print(f"(dropped the {dropped} oldest turns to stay within the context)", file=stdout, flush=True)
            request = Request(ids, max_tokens, temperature, top_p, stop_ids=stop_ids, seed=seed)
            answer = ""
            stdout.write("> ")
            for event in engine.submit(request).events():
                if event.finish is not None:
                    if event.finish == "error":
                        raise RuntimeError(f"generation failed: {event.error}")
                    break
                answer += event.text
                stdout.write(event.text)
                stdout.flush()
            stdout.write("\n")
            stdout.flush()
            turns.append({"role": "assistant", "content": answer})
    finally:
        engine.stop()


def _fit(tokenizer, head: list[dict], turns: list[dict], budget: int) -> tuple[list[int] | None, int]:
    """The prompt's ids with the fewest oldest turns dropped to fit ``budget`` tokens, and how many were dropped."""
    for dropped in range(0, len(turns), 2):  # whole exchanges (user, assistant), so a user turn comes first
        messages = head + turns[dropped:]
        ids = tokenizer.encode("".join(text for text, _ in chat_segments(messages)) + ASSISTANT)
        if len(ids) <= budget:
            return ids, dropped
    return None, 0
