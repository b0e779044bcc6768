"""TaskPromptDataModule: a task's prompts in seeded, resumable, rank-cut batches, with the model's tokenizer."""

import string

import pytest

from lightningllm.data import DataError, TaskPromptDataModule, Tokenizer
from lightningllm.data.contract import TokenDataModule
from lightningllm.data.task_prompts import EvalBatches, TrainBatches
from lightningllm.tasks.base import Example
from lightningllm.tasks.reasoning import ReasoningDataModule


class Numbers:
    """A toy task: ``train`` has ``size`` prompts ``"<i>+"``, val and test a few."""

    name, metric = "numbers", "exact_match"

    def __init__(self, size: int = 20):
        self.sizes = {"train": size, "val": 5, "test": 3}

    def examples(self, split: str) -> list[Example]:
        return [Example(prompt=f"{i}+" * (1 + i % 3), completion="0", answer="0") for i in range(self.sizes[split])]

    def score(self, example: Example, completion: str) -> float:
        return float(completion == example.answer)


class NumbersData(TokenDataModule):
    block_size = 16

    def __init__(self, size: int = 20, task: bool = True):
        super().__init__()
        self._task = Numbers(size) if task else None

    @property
    def task(self):
        return self._task

    def setup(self, stage=None):
        self.tokenizer = Tokenizer.train(["0123456789+"], kind="char")


def prompts(batches) -> list[list[str]]:
    return [[example.prompt for example in batch] for batch in batches]


def test_train_batches_are_seeded_shuffled_per_epoch_and_cut_across_ranks():
    examples = Numbers(20).examples("train")
    one = TrainBatches(examples, batch_size=4, seed=1)
    assert len(one) == 5
    epoch0, epoch1 = prompts(one), prompts(one)
    assert epoch0 == prompts(TrainBatches(examples, batch_size=4, seed=1))  # seeded
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) == sorted(sum(epoch1, []))  # a new order each epoch
    assert prompts(TrainBatches(examples, 4, shuffle=False))[0] == [e.prompt for e in examples[:4]]
    # 2 ranks × 2 take exactly the examples of 1 rank × 4, step by step.
    ranks = [prompts(TrainBatches(examples, 2, rank=r, ranks=2, seed=1)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == epoch0


def test_train_batches_resume_at_the_next_prompt_and_refuse_other_prompts():
    examples = Numbers(20).examples("train")
    straight = TrainBatches(examples, batch_size=3, seed=7)
    whole = prompts(straight) + prompts(straight)  # two epochs of 6 steps (2 prompts left out of each)
    run = TrainBatches(examples, batch_size=3, seed=7)
    stream = iter(run)
    seen = [next(stream) for _ in range(4)]
    state = run.state_dict()
    resumed = TrainBatches(examples, batch_size=3, seed=7)
    resumed.load_state_dict(state)
    assert prompts(seen) + prompts(resumed) + prompts(resumed) == whole
    with pytest.raises(DataError, match="cannot resume the prompt position: the task's training prompts changed"):
        TrainBatches(Numbers(21).examples("train"), batch_size=3, seed=7).load_state_dict(state)
    with pytest.raises(DataError, match="seed 7 -> 8"):
        TrainBatches(examples, batch_size=3, seed=8).load_state_dict(state)


def test_eval_batches_cover_every_example_once_in_as_many_steps_on_every_rank():
    examples = Numbers().examples("val")  # 5
    shares = [list(EvalBatches(examples, batch_size=2, rank=r, ranks=2)) for r in (0, 1)]
    assert [len(share) for share in shares] == [2, 2]
    assert prompts(shares[0])[1] == [examples[4].prompt] and shares[1][1] == []  # an empty share of the last step
    assert sorted(e.prompt for share in shares for batch in share for e in batch) == sorted(e.prompt for e in examples)


def test_setup_reads_the_splits_with_the_model_tokenizer(tmp_path):
    path = Tokenizer.train(["0123456789+"], kind="char").save(tmp_path / "tokenizer.json")
    data = TaskPromptDataModule(NumbersData(), batch_size=4, num_val_examples=3, tokenizer_path=str(path))
    data.setup("fit")
    assert data.task is data.task_data.task and data.tokenizer.vocab_size == Tokenizer.from_file(path).vocab_size
    assert len(data.splits["train"]) == 20 and len(data.splits["val"]) == 3
    assert data.block_size == max(len(data.tokenizer.encode(e.prompt)) for e in data.splits["train"])  # 9: "5+5+5+"
    assert data.sample_prompts(2) == ["0+", "1+1+"]
    assert prompts(data.val_dataloader()) == [["0+", "1+1+", "2+2+2+"]]
    assert len(data.train_dataloader()) == 5
    assert data.hparams["task_data"].endswith("NumbersData")  # logged by name


def test_without_a_tokenizer_path_the_task_data_supplies_its_own():
    data = TaskPromptDataModule(NumbersData(), batch_size=2)
    data.setup("test")
    assert data.tokenizer is data.task_data.tokenizer and list(data.splits) == ["test"]


def test_the_built_in_task_needs_no_preparation_given_a_tokenizer(tmp_path):
    alphabet = string.ascii_letters + string.digits + " \n.,?:'-+="  # every character the corpus writes
    path = Tokenizer.train([alphabet], kind="char").save(tmp_path / "t.json")
    task_data = ReasoningDataModule(num_train=40, num_val=6, num_test=6, cache_dir=str(tmp_path / "cache"))
    data = TaskPromptDataModule(task_data, batch_size=4, tokenizer_path=str(path))
    data.prepare_data()
    data.setup("fit")
    assert not (tmp_path / "cache").exists()  # the problems are generated in memory; no shards were written
    assert len(data.splits["train"]) == 40 and data.splits["val"][0].prompt.startswith("Q: ")
    assert all(data.tokenizer.decode(data.tokenizer.encode(e.prompt)) == e.prompt for e in data.splits["train"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TaskPromptDataModule(NumbersData(), batch_size=0), "data.batch_size must be an integer >= 1"),
        (lambda: TaskPromptDataModule(object()), "data.task_data must be a data module with a task"),
    ],
)
def test_bad_settings_are_refused_in_one_line(make, message):
    with pytest.raises(DataError, match=message):
        make()


def test_a_task_data_without_task_or_with_too_few_prompts_is_refused_in_one_line():
    with pytest.raises(DataError, match="data.task_data NumbersData has no task"):
        TaskPromptDataModule(NumbersData(task=False)).setup("fit")
    with pytest.raises(DataError, match="task numbers has 3 train examples, and one step takes data.batch_size 4"):
        TaskPromptDataModule(NumbersData(size=3), batch_size=4).setup("fit")
