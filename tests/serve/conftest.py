"""A tiny trained model, exported with its tokenizer, for the server and chat tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightningllm.data import Tokenizer
from lightningllm.model import GPT, GPTConfig

TEXT = "the cat sat on the mat. the dog ran in the park. a bird sang 123 songs. " * 40


@pytest.fixture(scope="session")
def export(tmp_path_factory) -> Path:
    """A tiny model trained for a few seconds on a repetitive text, exported with its tokenizer."""
    out = tmp_path_factory.mktemp("serve") / "model"
    tokenizer = Tokenizer.train([TEXT], vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, block_size=64))
    ids = torch.tensor(tokenizer.encode(TEXT * 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 65, (16,))
        batch = torch.stack([ids[s : s + 65] for s in starts])
        loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out)
    tokenizer.save(out / "tokenizer.json")
    return out
