"""PromptDataModule: the prompts that ``predict`` continues, from the command line and/or a file.

A prompt file is either JSONL with a string ``prompt`` field per line, or plain text with one
prompt per line; in plain prompts a literal ``\\n`` becomes a newline. With ``chat`` every prompt
is wrapped in the chat format that instruction data trains on (``lightningllm.data.instruct``).
Batches are ``{"id": [...], "prompt": [...]}`` dicts, ids counting from 0 in the given order.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from lightningllm.data.instruct import format_prompt
from lightningllm.data.sources import DataError


class PromptDataModule(L.LightningDataModule):
    """Prompts for ``predict``: from the command line and/or a file (one per line, or JSONL ``prompt``)."""

    def __init__(
        self,
        prompts: list[str] | None = None,
        prompt_file: str | None = None,
        batch_size: int = 8,
        chat: bool = False,
        system: str | None = None,
    ):
        """
        Args:
            prompts: prompt strings; a literal ``\\n`` in them becomes a newline.
            prompt_file: a ``.jsonl`` file with a ``prompt`` field per line, or a text file with one
                prompt per line (literal ``\\n`` becomes a newline).
            batch_size: prompts generated together (with ``model.sample_seed``, a prompt's completion is the
                same at any batch size).
            chat: wrap each prompt in the chat format that instruction data trains on
                (``<|user|>PROMPT<|end|><|assistant|>``), for models fine-tuned on prompt/response data.
            system: with ``chat``, a system message put before each prompt.
        """
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer (got {batch_size!r})")
        self.save_hyperparameters(logger=False)
        self.prompts = [p.replace("\\n", "\n") for p in (prompts or [])]
        self.prompt_file = prompt_file
        self.batch_size = batch_size
        self.chat = chat
        self.system = system

    def setup(self, stage: str | None = None) -> None:
        """Read the prompt file and wrap the prompts; a ``DataError`` when there are none."""
        prompts = list(self.prompts)
        if self.prompt_file:
            from_file = read_prompt_file(Path(self.prompt_file))
            if not from_file and not prompts:
                raise DataError(f"prompt file {self.prompt_file} holds no prompts (one a line, or JSONL with 'prompt')")
            prompts.extend(from_file)
        if not prompts:
            raise DataError("no prompts given: pass --prompt TEXT or --prompt_file FILE")
        if self.chat:
            prompts = [format_prompt(p, self.system) for p in prompts]
        self._items = [{"id": i, "prompt": p} for i, p in enumerate(prompts)]

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        def collate(items):
            return {"id": [it["id"] for it in items], "prompt": [it["prompt"] for it in items]}

        return DataLoader(self._items, batch_size=self.batch_size, collate_fn=collate)


def read_prompt_file(path: Path) -> list[str]:
    """The prompts of a ``.jsonl`` file (``prompt`` fields) or a text file (one per line, blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"prompt file {path} does not exist")
    prompts = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                    raise DataError(f"{path}:{number}: record has no string 'prompt' field")
                prompts.append(record["prompt"])
            else:
                prompts.append(line.rstrip("\n").replace("\\n", "\n"))
    return prompts
