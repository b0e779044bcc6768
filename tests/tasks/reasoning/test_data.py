"""ReasoningDataModule: problems in curriculum order, answer-only loss, test shards, its task and prompts."""

import pytest
import torch

from lightningllm.data import DataError
from lightningllm.model import IGNORE_INDEX
from lightningllm.tasks import Task
from lightningllm.tasks.reasoning import ReasoningDataModule, ReasoningTask


def make(tmp_path, **kw) -> ReasoningDataModule:
    args = {"num_train": 400, "num_val": 30, "num_test": 30, "block_size": 160, "batch_size": 4}
    return ReasoningDataModule(**(args | {"cache_dir": str(tmp_path / "cache")} | kw))


def test_problems_stream_in_curriculum_order_with_answer_only_loss(tmp_path):
    dm = make(tmp_path)
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    first = dm.corpus().problems("train")[0]
    assert dm.tokenizer.decode(inputs[0].tolist()) == first.text[:160]  # unshuffled: the stream starts at problem 0
    # The question is read but not trained on: its targets are ignored, the answer's are kept.
    prompt_len = len(dm.tokenizer.encode(first.prompt))
    assert (targets[0, : prompt_len - 1] == IGNORE_INDEX).all()
    assert dm.tokenizer.decode(targets[0, prompt_len - 1 :].tolist()) == first.completion[: 161 - prompt_len]
    assert dm.tokenizer.kind == "char"


def test_every_token_can_be_trained_on(tmp_path):
    dm = make(tmp_path, num_train=200, block_size=32, answer_loss_only=False)
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    assert (targets != IGNORE_INDEX).all()


def test_the_test_shards_hold_the_test_problems(tmp_path):
    dm = make(tmp_path, block_size=64, batch_size=1)
    dm.setup("test")
    problems = dm.corpus().problems("test")
    stream = [t for p in problems for t in dm.tokenizer.encode(p.text) + [dm.tokenizer.eos_id]]
    windows = list(dm.test_dataloader())
    assert len(windows) == len(stream) // 65 and dm.report["tokens"]["test"] == len(stream)
    for k, (inputs, targets) in enumerate(windows):
        expected = torch.tensor(stream[65 * k : 65 * k + 65])
        assert torch.equal(inputs[0], expected[:-1])
        trained = targets[0] != IGNORE_INDEX  # the answers; a window may lie inside a question
        assert torch.equal(targets[0][trained], expected[1:][trained])
    assert sum(int((y != IGNORE_INDEX).sum()) for _, y in windows) > 0.5 * len(stream)


def test_the_task_and_sample_prompts_come_from_the_held_out_problems(tmp_path):
    dm = make(tmp_path)
    assert isinstance(dm.task, ReasoningTask) and isinstance(dm.task, Task)
    val = dm.corpus().problems("val")
    assert dm.sample_prompts(2) == [val[0].prompt, val[1].prompt]
    assert [e.prompt for e in dm.task.examples("test")] == [p.prompt for p in dm.corpus().problems("test")]


def test_hparams_hold_the_arguments(tmp_path):
    dm = make(tmp_path, working="plain", step_mix=(1.0, 1.0, 0.0), curriculum="none")
    assert dm.hparams["working"] == "plain" and dm.hparams["curriculum"] == "none"
    assert dm.hparams["num_train"] == 400 and tuple(dm.hparams["step_mix"]) == (1.0, 1.0, 0.0)
    assert "prepare_workers" not in dm.hparams  # the module's own arguments, not its base class's


def test_resuming_on_another_corpus_is_refused_in_one_line(tmp_path):
    state = make(tmp_path).state_dict()
    with pytest.raises(DataError, match=r"^cannot resume: the checkpoint was trained on prepared corpus reasoning-"):
        make(tmp_path, num_train=500).load_state_dict(state)
