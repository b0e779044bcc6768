"""Run the server: load a checkpoint or export, start the engine, serve the API with uvicorn until SIGTERM.

uvicorn handles SIGTERM and Ctrl-C itself: it stops accepting connections, lets in-flight
requests finish (streams included, up to ``graceful_seconds``), then the engine stops and
cancels what still waits, and the command exits 143 (SIGTERM) or 130 (SIGINT), as every
``lightningllm`` command does when stopped by a signal. ``--port 0`` picks a free port; the line
``serving MODEL on URL`` says which.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path


def serve(
    source: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 32,
    max_tokens: int | None = None,
    name: str | None = None,
    quantize: str | None = None,
    graceful_seconds: float = 30.0,
) -> None:
    """Serve the model of ``source`` (a checkpoint, or an export folder) at ``http://host:port``; ``quantize``
    ``int8`` runs it with int8 block weights (``lightningllm.model.quantize_int8``)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ImportError("lightningllm serve needs FastAPI and uvicorn: pip install 'lightningllm[serve]'") from None
    from lightningllm.checkpoint import load_source
    from lightningllm.serve.app import build_app
    from lightningllm.serve.engine import Engine

    if not 0 <= port < 65536:
        raise ValueError(f"--port must be from 0 to 65535, got {port}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"--max_tokens must be at least 1, got {max_tokens}")
    model, tokenizer = load_source(source, quantize)
    if tokenizer is None:
        raise ValueError(f"{source} holds no tokenizer, and serving text needs one")
    engine = Engine(model.eval(), tokenizer, max_batch=max_batch).start()
    name = name or default_name(source)
    app = build_app(engine, name, max_tokens)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=graceful_seconds, lifespan="off"
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1]
        print(f"serving {name} on http://{host}:{bound} (OpenAI API under /v1)", flush=True)

    async def main() -> None:
        task = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            task.cancel()

    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal it drained for, to these
        signal.signal(signum, lambda number, _frame: received.append(number))
    try:
        asyncio.run(main())
    finally:
        engine.stop()
    if received:
        sys.exit(128 + received[0])
    if not server.started:
        sys.exit(f"error: cannot serve on {host}:{port} (is the port taken?)")


def default_name(source: str) -> str:
    """The model's id in the API: the run's folder for ``.../<run>/checkpoints/x.ckpt``, else the path's name."""
    path = Path(source)
    if path.suffix == ".ckpt" and path.parent.name == "checkpoints":
        return path.parent.parent.name
    return path.stem if path.suffix else path.name
