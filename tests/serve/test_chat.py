"""``lightningllm chat`` driven through stdin: streamed answers, the context kept, /reset and /quit."""

from __future__ import annotations

import subprocess
import sys

from lightningllm.data import Tokenizer
from lightningllm.data.instruct import chat_segments, format_prompt
from lightningllm.model import GPT, generate
from tests.conftest import REPO


def run_chat(export, lines: list[str], *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lightningllm", "chat", "--model", str(export), "--temperature", "0", *options]
    return subprocess.run(command, input="".join(f"{line}\n" for line in lines), capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip


def greedy(export, text: str, max_tokens: int) -> str:
    model, tokenizer = GPT.from_pretrained(export).eval(), Tokenizer.from_file(export)
    ids = generate(model, [tokenizer.encode(text)], max_new_tokens=max_tokens, temperature=0, eos_id=tokenizer.eos_id)
    return tokenizer.decode(ids[0])


def test_each_answer_continues_the_whole_conversation(export):
    result = run_chat(export, ["the cat", "a bird", "/quit", "never read"], "--max_tokens", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    first = greedy(export, format_prompt("the cat"), 8)
    history = [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": first}]
    history.append({"role": "user", "content": "a bird"})
    second = greedy(export, "".join(t for t, _ in chat_segments(history)) + "<|assistant|>", 8)
    assert result.stdout.splitlines()[1:] == [f"> {first}", f"> {second}"]


def test_reset_forgets_and_a_full_context_drops_the_oldest_turns_and_says_so(export):
    long = "the cat sat on the mat. the dog"
    result = run_chat(export, [long, long, "/reset", "the park"], "--max_tokens", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "(dropped the 2 oldest turns to stay within the context)" in lines
    assert "(conversation reset)" in lines
    assert lines[-1] == "> " + greedy(export, format_prompt("the park"), 20)  # nothing from before the reset


def test_a_message_longer_than_the_context_is_refused_and_the_chat_goes_on(export):
    result = run_chat(export, ["the cat " * 60, "the park"], "--max_tokens", "4")
    assert result.returncode == 0
    assert "(that message alone is longer than the context: shorten it)" in result.stdout
    assert result.stdout.splitlines()[-1] == "> " + greedy(export, format_prompt("the park"), 4)


def test_bad_options_are_one_line_errors(export):
    result = run_chat(export, [], "--max_tokens", "500")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --max_tokens must be from 1 to 63 (the context is 64), got 500"
    ]
