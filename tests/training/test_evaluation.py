"""TaskEval refuses to run where it would score nothing, and under DDP scores the whole split once."""

import os

import lightning as L
import pytest
import torch

from lightningllm.data import Tokenizer
from lightningllm.data.contract import TokenDataModule
from lightningllm.model import GPTConfig
from lightningllm.tasks import Example
from lightningllm.training import LitGPT, TaskEval


class PlainText(TokenDataModule):
    """Token data with no task."""

    block_size = 8

    def setup(self, stage: str) -> None:
        self.tokenizer = Tokenizer.train(["abc"], kind="char")

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randint(0, 8, (8, 9)), batch_size=4)


def test_task_eval_on_data_without_a_task_is_refused_in_one_line():
    trainer = L.Trainer(max_steps=1, callbacks=[TaskEval()], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"^TaskEval needs a data module with a task .* PlainText has none"):
        trainer.fit(LitGPT(GPTConfig.from_name("debug", vocab_size=None)), datamodule=PlainText())


class ParityTask:
    """Scores 1 for even-numbered examples, whatever the completion; records which process scored each."""

    name, metric = "parity", "exact_match"

    def __init__(self, record_dir: str):
        self.record_dir = record_dir

    def examples(self, split: str) -> list[Example]:
        return [Example("ab", "a", "1" if i % 2 == 0 else "0", "early" if i < 6 else "late") for i in range(12)]

    def score(self, example: Example, completion: str) -> float:
        with open(os.path.join(self.record_dir, f"{os.getpid()}.txt"), "a") as record:
            record.write(example.answer)
        return float(example.answer == "1")


class ParityData(PlainText):
    def __init__(self, record_dir: str):
        super().__init__()
        self.parity = ParityTask(record_dir)

    @property
    def task(self) -> ParityTask:
        return self.parity

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.randint(0, 3, (8, 9)), batch_size=2)


def test_under_ddp_each_rank_scores_its_share_and_the_score_is_the_whole_splits(tmp_path):
    # Rank 0's share (every other example) scores 1.0 and rank 1's 0.0: only the reduced score is 0.5.
    trainer = L.Trainer(
        strategy="ddp_spawn", accelerator="cpu", devices=2, callbacks=[TaskEval(num_val_examples=12)],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=None, block_size=32))
    (metrics,) = trainer.validate(module, datamodule=ParityData(str(tmp_path)))
    assert metrics["val/exact_match"] == 0.5
    assert metrics["val/exact_match_early"] == metrics["val/exact_match_late"] == 0.5
    shares = sorted(path.read_text() for path in tmp_path.glob("*.txt"))
    assert shares == ["000000", "111111"]  # two processes, six examples each, none decoded twice


class SplitTask:
    """Right on every ``test`` example, wrong on every ``extra`` one; no examples in any other split."""

    name, metric = "splits", "exact_match"

    def examples(self, split: str) -> list[Example]:
        answer = {"test": "1", "extra": "0"}.get(split)
        return [Example("ab", "a", answer, "g") for _ in range(4)] if answer else []

    def score(self, example: Example, completion: str) -> float:
        return float(example.answer == "1")


class SplitData(PlainText):
    task = SplitTask()

    def test_dataloader(self):
        return torch.utils.data.DataLoader(torch.randint(0, 3, (4, 9)), batch_size=2)


def test_each_of_test_splits_is_scored_and_logged_under_its_name(capsys):
    def run(splits):
        trainer = L.Trainer(callbacks=[TaskEval(test_splits=splits)], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
        module = LitGPT(GPTConfig.from_name("debug", vocab_size=None, block_size=32))
        return trainer.test(module, datamodule=SplitData())

    (metrics,) = run(["test", "extra"])
    assert metrics["test/exact_match"] == 1.0 and metrics["test/extra_exact_match"] == 0.0
    assert metrics["test/extra_exact_match_g"] == 0.0
    out = capsys.readouterr().out
    assert "held-out test split (4 examples): exact match 100.0%" in out and "extra split (4 examples)" in out
    with pytest.raises(ValueError, match="task splits has no examples in split 'nothing'"):
        run(["test", "nothing"])
    with pytest.raises(ValueError, match="TaskEval.test_splits must name distinct splits"):
        TaskEval(test_splits=["test", "test"])
