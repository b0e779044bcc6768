"""The serving engine: one thread decodes every waiting request together, in one batched, KV-cached forward.

``Engine(model, tokenizer).submit(Request(...))`` returns a ``Handle`` whose ``events()`` yield
text deltas and then one final event with the finish reason. The engine's thread takes all waiting
requests (up to ``max_batch``), left-pads their prompts into one batch, prefills the KV cache
once and decodes one token per step for all of them; requests that arrive while a batch decodes
wait for the next one. Each row keeps its own sampling settings (temperature, top-p), its own
random stream (seeded per request, so a seeded request returns the same text in any batch), its
own token limit and its own stop strings; a row that ends (EOS, a stop token or string, its
limit, a cancelled handle such as a client gone mid-stream) stops being reported at once, and the
batch ends when all of its rows have. Text is streamed as it becomes final: never half a UTF-8
character, and never the first characters of what may turn out to be a stop string.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, sample_next


@dataclass
class Request:
    """One sequence to generate (an ``n > 1`` API request is ``n`` of these)."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stop_ids: tuple[int, ...] = ()
    """Token ids that end the sequence without being part of its text (EOS; a chat turn's end)."""
    seed: int | None = None


@dataclass
class Event:
    """What a handle yields: a text delta (``finish`` None), or the end (``finish`` set, ``text`` empty)."""

    text: str = ""
    finish: str | None = None
    """``stop`` (a stop token or string), ``length`` (max_tokens or the context), ``cancelled`` or ``error``."""
    completion_tokens: int = 0
    error: str | None = None


class Handle:
    """The caller's side of a submitted request: events arrive through ``on_event`` or ``events()``."""

    def __init__(self, request: Request, on_event: Callable[[Event], None] | None = None):
        self.request = request
        self._queue: queue.Queue[Event] = queue.Queue()
        self._on_event = on_event or self._queue.put
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop generating for this request at the next step (its client went away)."""
        self.cancelled.set()

    def emit(self, event: Event) -> None:
        self._on_event(event)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Deltas, then the final event (only when no ``on_event`` callback was given)."""
        while True:
            event = self._queue.get(timeout=timeout)
            yield event
            if event.finish is not None:
                return


@dataclass
class _Row:
    handle: Handle
    generator: torch.Generator
    ids: list[int] = field(default_factory=list)
    sent: str = ""
    done: bool = False


class Engine:
    """Batches and decodes requests on a thread of its own; ``start()``, ``submit()``, ``stop()``."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self._waiting: queue.Queue[Handle] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="lightningllm-engine", daemon=True)
        self._stopping = threading.Event()
        self.batches = 0
        """Batches decoded so far (with ``rows``, what tests and benchmarks read to see batching happen)."""
        self.rows = 0

    def start(self) -> Engine:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight, cancel what still waits, and end the thread."""
        self._stopping.set()
        self._waiting.put(None)  # wakes the thread
        self._thread.join(timeout)

    def submit(self, request: Request, on_event: Callable[[Event], None] | None = None) -> Handle:
        handle = Handle(request, on_event)
        if self._stopping.is_set():
            handle.emit(Event(finish="cancelled"))
        else:
            self._waiting.put(handle)
        return handle

    # --- the engine's thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            first = self._waiting.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    handle = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if handle is None:
                    self._stopping.set()
                    break
                batch.append(handle)
            try:
                self._decode([h for h in batch if not h.cancelled.is_set()])
            except Exception as err:  # a broken model must not leave clients waiting forever
                for handle in batch:
                    handle.emit(Event(finish="error", error=str(err).splitlines()[0] if str(err) else repr(err)))
            for handle in batch:
                if handle.cancelled.is_set():
                    handle.emit(Event(finish="cancelled"))
        while True:  # requests left when stopping are cancelled, not dropped silently
            try:
                handle = self._waiting.get_nowait()
            except queue.Empty:
                return
            if handle is not None:
                handle.emit(Event(finish="cancelled"))

    @torch.inference_mode()
    def _decode(self, handles: list[Handle]) -> None:
        if not handles:
            return
        model, block_size = self.model, self.model.config.block_size
        device = model.lm_head.weight.device
        rows = [_Row(h, _generator(h.request.seed)) for h in handles]
        prompts = [h.request.prompt_ids for h in handles]
        T = max(len(p) for p in prompts)
        steps = min(max(h.request.max_tokens for h in handles), block_size - T)
        idx = torch.zeros((len(rows), T), dtype=torch.long, device=device)
        for r, prompt in enumerate(prompts):
            idx[r, T - len(prompt) :] = torch.tensor(prompt, device=device)
        pad = torch.tensor([T - len(p) for p in prompts], device=device)
        pad = pad if pad.any() else None
        self.batches += 1
        self.rows += len(rows)
        try:
            model.setup_kv_cache(len(rows), T + max(steps, 1))
            logits = model(idx, start=0, pad=pad)[:, -1]
            for step in range(steps):
                next_ids = [self._sample(row, logits[r : r + 1]) for r, row in enumerate(rows)]
                for row, token in zip(rows, next_ids, strict=True):
                    if not row.done:
                        self._advance(row, token, room=block_size - len(row.handle.request.prompt_ids))
                if all(row.done for row in rows):
                    break
                if step + 1 < steps:
                    tokens = torch.tensor(next_ids, device=device)[:, None]
                    logits = model(tokens, start=T + step, pad=pad)[:, -1]
        finally:
            model.clear_kv_cache()
        for row in rows:  # rows the batch's context ran out for
            if not row.done:
                self._flush(row, self.tokenizer.decode(row.ids))
                self._finish(row, "length")

    def _sample(self, row: _Row, logits: torch.Tensor) -> int:
        if row.done:
            return 0
        request = row.handle.request
        return int(sample_next(logits, request.temperature, None, request.top_p, [row.generator])[0])

    def _advance(self, row: _Row, token: int, room: int) -> None:
        request = row.handle.request
        if row.handle.cancelled.is_set():
            row.done = True
            return
        if token in request.stop_ids:
            self._flush(row, self.tokenizer.decode(row.ids))
            self._finish(row, "stop")
            return
        row.ids.append(token)
        text = self.tokenizer.decode(row.ids)
        for stop in request.stop:
            at = text.find(stop, max(0, len(row.sent) - len(stop)))
            if at >= 0:
                self._flush(row, text[:at])
                self._finish(row, "stop")
                return
        if len(row.ids) >= request.max_tokens or len(row.ids) >= room:
            self._flush(row, text)
            self._finish(row, "length")
            return
        final = text.rstrip("\ufffd")  # a character whose bytes are not all there yet
        hold = max((len(stop) - 1 for stop in request.stop), default=0)
        self._flush(row, final[: len(final) - hold] if hold else final)

    def _flush(self, row: _Row, text: str) -> None:
        if len(text) > len(row.sent) and text.startswith(row.sent):
            row.handle.emit(Event(text=text[len(row.sent) :]))
            row.sent = text

    def _finish(self, row: _Row, reason: str) -> None:
        row.done = True
        row.handle.emit(Event(finish=reason, completion_tokens=len(row.ids)))


def _generator(seed: int | None) -> torch.Generator:
    """The request's own random stream: seeded by it, else by fresh entropy."""
    return torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
