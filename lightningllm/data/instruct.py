"""Instruction and chat data: JSONL records that train on the answers only.

A record with ``prompt`` and ``response`` fields, or with a ``messages`` list of
``{"role": "system" | "user" | "assistant", "content": ...}`` turns, becomes a list of
``(text, trained)`` segments in one chat format::

    <|system|>You are terse.<|end|><|user|>Capital of France?<|end|><|assistant|>Paris.<|end|>

Everything up to and including each ``<|assistant|>`` tag is context (read, never predicted);
each assistant answer and its closing ``<|end|>`` are trained on. ``format_prompt`` builds the
same prefix for generation, so a fine-tuned model sees at inference exactly what it saw in training.
"""

from __future__ import annotations

from lightningllm.data.tokenizer import CHAT_ROLES

SYSTEM, USER, ASSISTANT, END = CHAT_ROLES
ROLE_TAGS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

Segment = tuple[str, bool]
"""(text, trained): ``trained=False`` marks context whose tokens the loss skips."""


def format_prompt(prompt: str, system: str | None = None) -> str:
    """The context a chat model continues from: optional system turn, the user turn, the assistant tag."""
    head = f"{SYSTEM}{system}{END}" if system else ""
    return f"{head}{USER}{prompt}{END}{ASSISTANT}"


def instruct_segments(prompt: str, response: str) -> list[Segment]:
    """A single-turn ``prompt``/``response`` pair as chat segments."""
    return [(format_prompt(prompt), False), (response + END, True)]


def chat_segments(messages: list) -> list[Segment]:
    """A ``messages`` list as segments; raises ``ValueError`` naming the first malformed turn."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {role, content} turns")
    segments: list[Segment] = []
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ROLE_TAGS or not isinstance(turn.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{'role': system|user|assistant, 'content': str}}")
        tag = ROLE_TAGS[turn["role"]]
        if turn["role"] == "assistant":
            segments += [(tag, False), (turn["content"] + END, True)]
        else:
            segments.append((tag + turn["content"] + END, False))
    return _merge_adjacent(segments)


def record_segments(record: dict, text_field: str) -> list[Segment]:
    """Segments of one JSONL record: plain ``text_field``, ``messages``, or ``prompt`` + ``response``."""
    if text_field in record:
        if not isinstance(record[text_field], str):
            raise ValueError(f"field {text_field!r} is not a string")
        return [(record[text_field], True)]
    if "messages" in record:
        return chat_segments(record["messages"])
    if "prompt" in record and "response" in record:
        if not isinstance(record["prompt"], str) or not isinstance(record["response"], str):
            raise ValueError("fields 'prompt' and 'response' must be strings")
        return instruct_segments(record["prompt"], record["response"])
    raise ValueError(f"record has no {text_field!r} field (nor 'prompt'/'response' or 'messages')")


def _merge_adjacent(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring segments with the same ``trained`` flag (fewer, longer encode calls)."""
    merged: list[Segment] = []
    for text, trained in segments:
        if merged and merged[-1][1] == trained:
            merged[-1] = (merged[-1][0] + text, trained)
        else:
            merged.append((text, trained))
    return merged
