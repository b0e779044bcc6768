"""A task written outside the package plugs in exactly as the built-in reasoning task does.

``Greeting`` is a user's own task: prompts ``<name> says:`` whose right answer is `` hello``. Its
corpus goes through the shared preparation pipeline, its data module declares the contract
(tokenizer, block size, sample prompts, task), and the command line names the data module and
the generic ``TaskEval`` callback, as configs/demo.yaml does for the reasoning task.
"""

from collections.abc import Iterator

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightningllm.cli import build_cli
from lightningllm.data.datamodule import CorpusDataModule
from lightningllm.model import generate
from lightningllm.tasks import Example
from lightningllm.tasks.base import mean_scores

NAMES = ["ada", "bo", "cy", "di", "ed", "flo", "gus", "hal", "ivy", "jo", "kit", "lu", "max", "ned", "oz", "pip"]
SPLIT_OF = {name: ("val" if i in (3, 6, 11) else "test" if i in (5, 13) else "train") for i, name in enumerate(NAMES)}


class GreetingTask:
    name = "greeting"
    metric = "exact_match"

    def examples(self, split: str) -> list[Example]:
        return [
            Example(prompt=f"{n} says:", completion=" hello", answer="hello", group=f"{len(n)}-letter")
            for n in NAMES
            if SPLIT_OF[n] == split
        ]

    def score(self, example: Example, completion: str) -> float:
        return float(completion.strip() == example.answer)


class GreetingCorpus:
    name = "greeting"

    def __init__(self, repeats: int):
        self.repeats = repeats

    def fingerprint(self) -> dict:
        return {"repeats": self.repeats, "names": NAMES}

    def size_bytes(self) -> int:
        return 0

    def documents(self, report) -> Iterator[tuple[str, list[tuple[str, bool]], bool]]:
        for _ in range(self.repeats):
            for name in NAMES:
                report.documents_read += 1
                report.documents_kept += 1
                yield SPLIT_OF[name], [(f"{name} says:", False), (" hello", True)], True


class GreetingDataModule(CorpusDataModule):
    def __init__(self, repeats: int = 40, block_size: int = 24, batch_size: int = 16, cache_dir: str = ".cache"):
        super().__init__(
            tokenizer_kind="char", block_size=block_size, batch_size=batch_size, cache_dir=cache_dir, prepare_workers=1
        )
        self.save_hyperparameters(logger=False)
        self._corpus = GreetingCorpus(repeats)
        self._task = GreetingTask()

    def corpus(self) -> GreetingCorpus:
        return self._corpus

    @property
    def task(self) -> GreetingTask:
        return self._task

    def sample_prompts(self, count: int) -> list[str]:
        return [e.prompt for e in self._task.examples("val")][:count]


class Logged(Callback):
    """Every value the module logged at each validation run."""

    def __init__(self):
        self.runs: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.runs.append({k: float(v) for k, v in trainer.callback_metrics.items()})


@pytest.mark.parametrize("steps", [60])
def test_a_users_task_trains_and_is_scored_through_the_generic_callbacks(tmp_path, monkeypatch, steps):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    cli = build_cli(
        [
            "--model.config.block_size=32", "--model.config.n_layer=2", "--model.config.n_head=2",
            "--model.config.n_embd=32", "--model.learning_rate=1e-2", "--model.warmup_steps=5",
            "--data=tests.tasks.test_plugin.GreetingDataModule", f"--trainer.max_steps={steps}",
            "--trainer.val_check_interval=20", "--trainer.check_val_every_n_epoch=null",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.callbacks+=lightningllm.training.TaskEval", "--trainer.callbacks.num_val_examples=100",
            "--trainer.callbacks+=lightningllm.training.SampleGenerations", "--seed_everything=0",
        ],
        run=False,
    )  # fmt: skip
    logged = Logged()
    cli.trainer.callbacks.append(logged)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    data, module = cli.datamodule, cli.model
    assert module.model.config.vocab_size == data.tokenizer.vocab_size  # the contract sized the model
    first, last = logged.runs[0], logged.runs[-1]
    assert {"val/exact_match", "val/exact_match_2letter", "val/exact_match_3letter"} <= set(last)
    # What TaskEval logged is the task's own score of the model's greedy completions.
    assert last["val/exact_match"] == pytest.approx(own_score(data, module, "val"))
    assert first["val/exact_match"] < 0.5 < last["val/exact_match"]  # and the model learned the task

    result = cli.trainer.test(cli.model, datamodule=data)[0]
    assert result["test/exact_match"] == pytest.approx(own_score(data, module, "test"))
    assert torch.isfinite(torch.tensor(result["test/loss"]))


def own_score(data: GreetingDataModule, module, split: str) -> float:
    examples, tokenizer = data.task.examples(split), data.tokenizer
    new = generate(
        module.model, [tokenizer.encode(e.prompt) for e in examples], 8, temperature=0, eos_id=tokenizer.eos_id
    )
    return mean_scores(data.task, examples, [tokenizer.decode(ids) for ids in new])["all"]
