"""Post-training from the command line: each documented config runs, from an exported model, on a user's files."""

from pathlib import Path

import pytest

from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, GPTConfig
from tests.conftest import CONFIGS, run_cli

CHAT = [
    {"prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."} for a in range(8) for b in range(5)
]


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory) -> tuple[Path, Path]:
    """An export folder (a debug model with a char tokenizer of the chat text) and a chat JSONL file."""
    import json

    root = tmp_path_factory.mktemp("post")
    data = root / "chat.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in CHAT))
    tokenizer = Tokenizer.train([data.read_text()], kind="char")
    base = root / "base"
    GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, block_size=256)).save_pretrained(base)
    tokenizer.save(base / "tokenizer.json")
    return base, data


def test_lora_chat_config_trains_adapters_on_an_export(chat_base, tmp_path):
    base, data = chat_base
    result = run_cli(
        "fit", "--config", str(CONFIGS / "lora-chat.yaml"), f"--model.init_from={base}", f"--data.sources={data}",
        f"--data.cache_dir={tmp_path / 'cache'}", "--trainer.fast_dev_run=2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lora: training" in result.stdout and "every other weight frozen" in result.stdout


def test_dpo_chat_config_trains_and_resumes_as_dpo(chat_base, tmp_path):
    import json

    import torch

    base, _ = chat_base
    pairs = tmp_path / "pairs.jsonl"
    records = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "I do not know."} for r in CHAT]
    pairs.write_text("".join(json.dumps(record) + "\n" for record in records))
    fit = ["fit", "--config", str(CONFIGS / "dpo-chat.yaml"), f"--model.init_from={base}", f"--data.train_file={pairs}"]
    fit += ["--trainer.val_check_interval=2", "--trainer.limit_val_batches=1"]
    first = run_cli(*fit, "--trainer.max_steps=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "logs" / "dpo-chat" / "checkpoints" / "last.ckpt"
    resumed = run_cli(*fit, "--trainer.max_steps=4", f"--ckpt_path={last}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 4
    assert "class_path: lightningllm.training.DPO" in checkpoint["lightningllm_config"]  # resumed as DPO
