"""``lightningllm serve`` as a separate process on 127.0.0.1, queried with the official ``openai`` client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from lightningllm.data import Tokenizer
from lightningllm.data.instruct import format_prompt
from lightningllm.model import GPT, generate
from tests.conftest import REPO, run_cli

openai = pytest.importorskip("openai", reason="openai is a test dependency (make test installs it)")


def start_server(export: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``lightningllm serve`` on a free port of 127.0.0.1; (process, base URL) once it answers /health."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "lightningllm", "serve", "--model", str(export), "--port", "0", *extra]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # "serving NAME on http://127.0.0.1:PORT (...)"
    assert " on http://127.0.0.1:" in line, line + process.stderr.read()
    url = line.split(" on ", 1)[1].split()[0]
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return process, url
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> int:
    os.kill(process.pid, signal.SIGTERM)
    return process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(export):
    process, url = start_server(export)
    yield url
    assert stop(process) == 143


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def ours(export: Path, prompt: str, max_tokens: int) -> str:
    """Our own greedy continuation of ``prompt`` (what the server must return)."""
    model, tokenizer = GPT.from_pretrained(export).eval(), Tokenizer.from_file(export)
    new = generate(model, [tokenizer.encode(prompt)], max_new_tokens=max_tokens, temperature=0, eos_id=tokenizer.eos_id)
    return tokenizer.decode(new[0])


def health(url: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{url}/health", timeout=5).read())


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["model"]
    assert health(server)["status"] == "ok"


def test_greedy_completion_equals_ours_and_lightningllm_predict(client, export, tmp_path):
    reply = client.completions.create(model="model", prompt="the cat", max_tokens=12, temperature=0)
    assert reply.choices[0].text == ours(export, "the cat", 12)
    assert reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 12)
    out = tmp_path / "predictions.jsonl"
    result = run_cli(
        "predict", "--model.init_from", str(export), "--prompt", "the cat", "--model.temperature", "0",
        "--model.max_new_tokens", "12", "--output", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text().splitlines()[0])["completion"] == reply.choices[0].text


def test_chat_completion_uses_the_chat_format(client, export):
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "the dog"}]
    reply = client.chat.completions.create(model="model", messages=messages, max_tokens=10, temperature=0)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == ours(export, format_prompt("the dog", system="Be terse."), 10)


def test_stop_strings_end_the_text_before_them(client, export):
    reply = client.completions.create(model="model", prompt="the cat", max_tokens=30, temperature=0, stop=["park"])
    full = ours(export, "the cat", 30)
    assert "park" in full and reply.choices[0].text == full[: full.index("park")]
    assert reply.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("chat", [False, True])
def test_streamed_chunks_add_up_to_the_same_seeded_text(client, chat):
    kwargs = dict(model="model", max_tokens=24, temperature=1.0, top_p=0.9, seed=7)
    if chat:
        messages = [{"role": "user", "content": "a bird"}]
        whole = client.chat.completions.create(messages=messages, **kwargs).choices[0].message.content
        chunks = client.chat.completions.create(messages=messages, stream=True, **kwargs)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    else:
        reply = client.completions.create(prompt="a bird", **kwargs)
        whole = reply.choices[0].text
        chunks = list(client.completions.create(prompt="a bird", stream=True, stream_options={"include_usage": True},
                                                **kwargs))  # fmt: skip
        streamed = "".join(c.choices[0].text for c in chunks if c.choices)
        assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens  # the last chunk: the usage
    assert streamed == whole and whole


def test_n_choices_are_separate_reproducible_samples(client):
    kwargs = dict(model="model", prompt="the", max_tokens=16, temperature=1.5, seed=3, n=3)
    first, second = client.completions.create(**kwargs), client.completions.create(**kwargs)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in second.choices] and len(set(texts)) > 1


BAD = {
    "prompt_too_long": (dict(prompt="the cat sat " * 40, max_tokens=4), "maximum context length is 64 tokens"),
    "max_tokens_over_context": (dict(prompt="the cat", max_tokens=63), "lower max_tokens to 62 or less"),
    "max_tokens_over_limit": (dict(prompt="the cat", max_tokens=500), "max_tokens must be an integer from 1 to 64"),
    "temperature": (dict(prompt="the cat", temperature=5), "temperature must be in [0, 2]"),
    "top_p": (dict(prompt="the cat", top_p=0), "top_p must be in (0, 1]"),
    "unknown_parameter": (dict(prompt="the cat", extra_body={"beam_width": 4}), "unrecognized request argument"),
    "unsupported_value": (dict(prompt="the cat", presence_penalty=1.0), "presence_penalty 1.0 is not supported"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_are_400s_with_openai_errors_and_the_server_goes_on(case, client, server):
    kwargs, message = BAD[case]
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="model", **kwargs)
    assert info.value.status_code == 400 and message in info.value.message, info.value.message
    assert info.value.body["type"] == "invalid_request_error"
    assert client.completions.create(model="model", prompt="the", max_tokens=2, temperature=0).choices[0].text


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", json.dumps({"messages": "hi"}).encode()])
def test_malformed_bodies_are_400s(body, server):
    request = urllib.request.Request(f"{server}/v1/chat/completions", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert json.loads(info.value.read())["error"]["type"] == "invalid_request_error"


def test_a_client_gone_mid_stream_is_cancelled_and_others_are_served(client, server):
    before = health(server)
    stream = client.completions.create(model="model", prompt="the", max_tokens=60, temperature=0, stream=True)
    next(iter(stream))
    stream.close()  # the connection drops
    reply = client.completions.create(model="model", prompt="the cat", max_tokens=4, temperature=0)
    assert reply.choices[0].text
    assert health(server)["batches"] > before["batches"]


def test_32_concurrent_clients_get_their_own_continuations_in_shared_batches(server, export):
    prompts = ["the cat", "the dog", "a bird", "the mat", "the park", "sang 1", "ran in", "sat on"]
    expected = {p: ours(export, p, 8) for p in prompts}
    before = health(server)

    def one_client(k: int) -> list[bool]:
        client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)
        results = []
        for j in range(8):
            prompt = prompts[(k + j) % len(prompts)]
            text = client.completions.create(model="model", prompt=prompt, max_tokens=8, temperature=0).choices[0].text
            results.append(text == expected[prompt])
        return results

    with ThreadPoolExecutor(32) as pool:
        answers = [ok for results in pool.map(one_client, range(32)) for ok in results]
    assert len(answers) == 256 and all(answers)
    after = health(server)
    sequences, batches = after["sequences"] - before["sequences"], after["batches"] - before["batches"]
    assert sequences == 256 and batches < sequences / 2  # requests were decoded together, not one by one


def test_sigterm_lets_an_in_flight_stream_finish_then_exits_143(export):
    process, url = start_server(export)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    stream = client.completions.create(model="model", prompt="the", max_tokens=50, temperature=0, stream=True)
    chunks = iter(stream)
    first = next(chunks).choices[0].text
    os.kill(process.pid, signal.SIGTERM)
    rest = [c.choices[0].text for c in chunks]
    assert first + "".join(rest) == ours(export, "the", 50)
    assert process.wait(timeout=60) == 143


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "70000"], "--port must be from 0 to 65535, got 70000"),
        (["--max_batch", "0"], "lightningllm serve: --max_batch must be at least 1, got 0"),
        (["--max_tokens", "0"], "--max_tokens must be at least 1, got 0"),
    ],
)
def test_bad_serve_options_are_one_line_errors(args, message, export, tmp_path):
    result = run_cli("serve", "--model", str(export), *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"], result.stderr


def test_serving_a_missing_model_is_a_one_line_error(tmp_path):
    result = run_cli("serve", "--model", str(tmp_path / "nothing"), cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "does not exist" in result.stderr


def test_quantize_int8_serves_predicts_and_exports_the_int8_model(export, tmp_path):
    """``--quantize int8`` is applied, not ignored: serve, predict and an ``export --quantize int8`` folder all
    give the int8 model's text, which differs from float32's by construction. Every block's first norm zeroes
    input feature 0 and its qkv weight gets a huge column there: float32 never sees it, but each int8 row's
    one scale then rounds every other weight of the row to 0, so the int8 model attends to nothing."""
    from lightningllm.model import quantize_int8

    fresh = tmp_path / "outlier"
    model = GPT.from_pretrained(export)
    with torch.no_grad():
        for block in model.blocks:
            block.norm_1.weight[0] = block.norm_1.bias[0] = 0.0
            block.attn.qkv.weight[:, 0] = 1e4
    model.save_pretrained(fresh)
    shutil.copy(export / "tokenizer.json", fresh / "tokenizer.json")
    tokenizer, prompt = Tokenizer.from_file(fresh), "the dog"
    fp32 = GPT.from_pretrained(fresh).eval()
    int8 = quantize_int8(GPT.from_pretrained(fresh))

    def greedy(model: GPT) -> str:
        new = generate(model, [tokenizer.encode(prompt)], max_new_tokens=24, temperature=0, eos_id=tokenizer.eos_id)
        return tokenizer.decode(new[0])

    expected = greedy(int8)
    assert expected != greedy(fp32)  # otherwise this test could not tell int8 from float32
    process, url = start_server(fresh, "--quantize", "int8")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.completions.create(model="outlier", prompt=prompt, max_tokens=24, temperature=0)
        assert reply.choices[0].text == expected
    finally:
        assert stop(process) == 143
    out = tmp_path / "predictions.jsonl"
    result = run_cli(
        "predict", "--model.init_from", str(fresh), "--quantize", "int8", "--prompt", prompt,
        "--model.temperature", "0", "--model.max_new_tokens", "24", "--output", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text().splitlines()[0])["completion"] == expected
    int8_dir = tmp_path / "int8"
    result = run_cli("export", "--ckpt_path", str(fresh), "--out", str(int8_dir), "--quantize", "int8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert greedy(GPT.from_pretrained(tmp_path / "int8")) == expected
    prompt = format_prompt("the dog")  # lightningllm chat --quantize int8: the same int8 model in the terminal
    chat = [sys.executable, "-m", "lightningllm", "chat", "--model", str(fresh), "--quantize", "int8",
            "--temperature", "0", "--max_tokens", "24"]  # fmt: skip
    result = subprocess.run(chat, input="the dog\n", capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout.splitlines()[1] == f"> {greedy(int8)}", result.stderr[-2000:]
    assert greedy(int8) != greedy(fp32)
    sizes = [(folder / "model.safetensors").stat().st_size for folder in (fresh, tmp_path / "int8")]
    assert sizes[1] < 0.6 * sizes[0]
