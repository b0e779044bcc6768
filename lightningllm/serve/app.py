"""The OpenAI-compatible HTTP API of ``lightningllm serve``, on FastAPI, over the batching ``Engine``.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (the chat format of
``lightningllm.data.instruct``, ending a turn at ``<|end|>``), each with ``stream: true`` as
server-sent events, ``GET /v1/models`` and ``GET /health``. Request parameters: ``max_tokens``,
``temperature``, ``top_p``, ``stop``, ``seed``, ``n``, ``stream``. Every bad request (malformed
JSON, a wrong or unknown parameter, a prompt plus ``max_tokens`` longer than the context) is a 400
with OpenAI's error object; the server keeps serving. A client that disconnects mid-stream has
its rows cancelled at the next decoding step.

FastAPI rather than LitServe: LitServe batches whole requests per ``predict`` call, while here the
engine owns batching at the decoding step (a request's rows end and leave as soon as they are
done), so only the HTTP layer is needed, and FastAPI + uvicorn is the mainstream one.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from lightningllm.data.instruct import ASSISTANT, END, chat_segments
from lightningllm.serve.engine import Engine, Event, Request

DEFAULT_MAX_TOKENS = 16
"""OpenAI's default ``max_tokens`` for completions; chat completions default to the room left in the context."""

COMMON = {"model", "max_tokens", "temperature", "top_p", "stop", "seed", "n", "stream", "user"}
IGNORED_IF_DEFAULT = {"frequency_penalty": 0, "presence_penalty": 0, "logprobs": None, "echo": False, "suffix": "",
                      "best_of": 1}  # fmt: skip
"""Parameters accepted only at the value that means "off": any other value would be silently ignored here."""


class BadRequest(Exception):
    """A request the API refuses: 400 with ``message`` and the parameter at fault."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


def error_body(message: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def build_app(engine: Engine, model_name: str, max_tokens_limit: int | None = None):
    """The FastAPI app serving ``engine`` as the model ``model_name``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    tokenizer = engine.tokenizer
    block_size = engine.model.config.block_size
    limit = min(max_tokens_limit or block_size, block_size)
    app = FastAPI(title="lightningllm", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(BadRequest)
    async def bad_request(_request, err: BadRequest):
        return JSONResponse(error_body(err.message, err.param), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):
        return JSONResponse(error_body(str(err.detail), kind="invalid_request_error"), status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, err: RequestValidationError):
        return JSONResponse(error_body(str(err.errors()[:1])), status_code=400)

    @app.get("/health")
    async def health():
        return {"status": "ok", "batches": engine.batches, "sequences": engine.rows}

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "lightningllm"}],
        }

    @app.post("/v1/completions")
    async def completions(http: HTTPRequest):
        body = await _json(http)
        _check_keys(body, COMMON | {"prompt", "stream_options"} | set(IGNORED_IF_DEFAULT))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("prompt must be a non-empty string", "prompt")
        ids = tokenizer.encode(prompt)
        options = _options(body, len(ids), block_size, limit, DEFAULT_MAX_TOKENS)
        requests = _requests(ids, options, stop_ids=(tokenizer.eos_id,))
        return await _respond(http, engine, requests, body, model_name, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HTTPRequest):
        body = await _json(http)
        chat_only = COMMON | {"messages", "max_completion_tokens", "stream_options"}
        _check_keys(body, chat_only | set(IGNORED_IF_DEFAULT) - {"suffix", "best_of"})
        messages = body.get("messages")
        try:
            context = "".join(text for text, _ in chat_segments(messages)) + ASSISTANT
        except ValueError as err:
            raise BadRequest(str(err), "messages") from None
        if "max_completion_tokens" in body and "max_tokens" not in body:
            body["max_tokens"] = body["max_completion_tokens"]
        ids = tokenizer.encode(context)
        options = _options(body, len(ids), block_size, limit, None)
        stop_ids = tuple(i for i in (tokenizer.eos_id, tokenizer.hf.token_to_id(END)) if i is not None)
        requests = _requests(ids, options, stop_ids=stop_ids)
        return await _respond(http, engine, requests, body, model_name, chat=True)

    return app


async def _json(http) -> dict:
    raw = await http.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"the request body is not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _check_keys(body: dict, allowed: set[str]) -> None:
    for key, value in body.items():
        if key not in allowed:
            raise BadRequest(f"unrecognized request argument supplied: {key}", key)
        if key in IGNORED_IF_DEFAULT and value not in (IGNORED_IF_DEFAULT[key], None):
            raise BadRequest(f"{key} {value!r} is not supported by lightningllm serve", key)


def _number(body: dict, name: str, default: float | None, low: float, high: float, low_open: bool = False):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a number, got {json.dumps(value)}", name)
    if value > high or value < low or (low_open and value == low):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise BadRequest(f"{name} must be in {bounds}, got {value}", name)
    return float(value)


def _integer(body: dict, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise BadRequest(f"{name} must be an integer {span}, got {json.dumps(value)}", name)
    return value


def _options(body: dict, prompt_tokens: int, block_size: int, limit: int, default_max: int | None) -> dict:
    if prompt_tokens >= block_size:
        raise BadRequest(
            f"this model's maximum context length is {block_size} tokens, but the prompt has {prompt_tokens}", "prompt"
        )
    room = block_size - prompt_tokens
    max_tokens = _integer(body, "max_tokens", None, 1, limit)
    if max_tokens is None:
        max_tokens = min(default_max or room, room, limit)
    elif max_tokens > room:
        raise BadRequest(
            f"this model's maximum context length is {block_size} tokens; the prompt has {prompt_tokens} and "
            f"max_tokens is {max_tokens}: lower max_tokens to {room} or less",
            "max_tokens",
        )
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None:
        stop = []
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop must be a non-empty string or a list of up to 4 of them", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false, got {json.dumps(stream)}", "stream")
    seed = _integer(body, "seed", None, -(2**63), 2**63 - 1)
    return {
        "max_tokens": max_tokens,
        "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
        "top_p": _number(body, "top_p", None, 0.0, 1.0, low_open=True),
        "stop": tuple(stop),
        "seed": seed,
        "n": _integer(body, "n", 1, 1, 16),
        "prompt_tokens": prompt_tokens,
    }


def _requests(ids: list[int], options: dict, stop_ids: tuple[int, ...]) -> list[Request]:
    seed = options["seed"]
    return [
        Request(
            prompt_ids=ids,
            max_tokens=options["max_tokens"],
            temperature=options["temperature"],
            top_p=options["top_p"],
            stop=options["stop"],
            stop_ids=stop_ids,
            seed=None if seed is None else seed + i,  # n choices: n different draws, each reproducible
        )
        for i in range(options["n"])
    ]


async def _respond(http, engine: Engine, requests: list[Request], body: dict, model: str, chat: bool):
    loop = asyncio.get_running_loop()
    merged: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
    handles = [
        engine.submit(request, lambda event, i=i: loop.call_soon_threadsafe(merged.put_nowait, (i, event)))
        for i, request in enumerate(requests)
    ]
    prompt_tokens = len(requests[0].prompt_ids)
    kind = "chat.completion" if chat else "text_completion"
    rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
    created = int(time.time())

    if not body.get("stream", False):
        texts, reasons, tokens = [""] * len(handles), [None] * len(handles), 0
        try:
            while any(reason is None for reason in reasons):
                i, event = await merged.get()
                if event.finish is None:
                    texts[i] += event.text
                else:
                    if event.finish == "error":
                        return JSONResponse(error_body(event.error or "generation failed", kind="server_error"), 500)
                    reasons[i] = event.finish
                    tokens += event.completion_tokens
        except asyncio.CancelledError:  # the client went away
            for handle in handles:
                handle.cancel()
            raise
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
            if chat
            else {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
            for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
        ]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
        return {"id": rid, "object": kind, "created": created, "model": model, "choices": choices, "usage": usage}

    async def stream() -> AsyncIterator[str]:
        chunk = "chat.completion.chunk" if chat else "text_completion"

        def sse(choice: dict | None, **extra) -> str:
            body = {
                "id": rid,
                "object": chunk,
                "created": created,
                "model": model,
                "choices": [choice] if choice else [],
            }
            return "data: " + json.dumps({**body, **extra}) + "\n\n"

        open_rows, tokens = len(handles), 0
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        try:
            if chat:
                for i in range(len(handles)):
                    yield sse({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
            while open_rows:
                i, event = await merged.get()
                if event.finish is None:
                    delta = {"content": event.text} if chat else None
                    yield sse(
                        {"index": i, "delta": delta, "finish_reason": None}
                        if chat
                        else {"index": i, "text": event.text, "finish_reason": None, "logprobs": None}
                    )
                    continue
                open_rows -= 1
                tokens += event.completion_tokens
                yield sse(
                    {"index": i, "delta": {}, "finish_reason": event.finish}
                    if chat
                    else {"index": i, "text": "", "finish_reason": event.finish, "logprobs": None}
                )
            if include_usage:  # OpenAI's stream_options: one last chunk, no choices, the usage
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens}
                yield sse(None, usage={**usage, "total_tokens": prompt_tokens + tokens})
            yield "data: [DONE]\n\n"
        finally:  # normal end, or the client disconnected (the generator is closed)
            for handle in handles:
                handle.cancel()

    return StreamingResponse(stream(), media_type="text/event-stream")
