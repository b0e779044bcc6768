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


def test_the_object_storage_settings_reach_the_corpus_module(tmp_path):
    dm = make(
        tmp_path, cache_dir="s3://bucket/corpora", local_cache_dir=str(tmp_path / "local"), max_cache_size="1GB",
        s3_endpoint="http://127.0.0.1:9",
    )  # fmt: skip
    assert dm.remote.uri == "s3://bucket/corpora" and dm.remote.endpoint == "http://127.0.0.1:9"
    assert dm.prepared_dir.parent == tmp_path / "local" / "s3" / "bucket" / "corpora"
    assert dm._shards("train")["max_cache_size"] == "1GB"
    assert dm.hparams["local_cache_dir"] == str(tmp_path / "local") and dm.hparams["max_cache_size"] == "1GB"
    with pytest.raises(DataError, match=r"^data.max_cache_size must be a size such as 50GB"):
        make(tmp_path, max_cache_size="lots")


def test_resuming_on_another_corpus_is_refused_in_one_line(tmp_path):
    state = make(tmp_path).state_dict()
    with pytest.raises(DataError, match=r"^cannot resume: the checkpoint was trained on prepared corpus reasoning-"):
        make(tmp_path, num_train=500).load_state_dict(state)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"num_train": 0}, "data.num_train must be ≥ 1 (got 0)"),
        ({"num_val": 0}, "data.num_val must be ≥ 1 (got 0)"),
        ({"num_test": -1}, "data.num_test must be ≥ 0 (got -1)"),
        ({"block_size": 0}, "data.block_size must be ≥ 1 (got 0)"),
        ({"batch_size": -1}, "data.batch_size must be ≥ 1 (got -1)"),
        ({"working": "words"}, "data.working must be one of 'plain', 'reversed', 'digits' (got 'words')"),
        ({"curriculum": "random"}, "data.curriculum must be one of 'none', 'staged' (got 'random')"),
        ({"step_mix": (0.0, 0.0, 0.0)}, "data.step_mix must be 3 weights ≥ 0, not all 0 (got [0.0, 0.0, 0.0])"),
        ({"stages": (0.5, 0.2)}, "data.stages must be 2 fractions with 0 ≤ first ≤ second ≤ 1 (got [0.5, 0.2])"),
    ],
)
def test_every_setting_is_checked_at_construction_in_one_line_naming_it(tmp_path, setting, message):
    with pytest.raises(DataError) as refused:
        make(tmp_path, **setting)
    assert str(refused.value) == message


def test_too_few_problems_for_a_batch_or_a_test_sample_say_which_number_to_raise(tmp_path):
    dm = make(tmp_path, num_train=3, num_test=0, block_size=64, batch_size=32)
    with pytest.raises(
        DataError, match=r"^too little training data: the train split of the generated reasoning corpus"
    ):
        dm.setup("fit")
    with pytest.raises(DataError, match=r"data.batch_size 32 × 65 = 2,080 tokens; raise data.num_train \(now 3\), or"):
        dm.train_dataloader()
    with pytest.raises(DataError, match=r"^too little test data: .* has 0 tokens .* raise data.num_test \(now 0\)"):
        dm.setup("test")
