"""ReasoningDataModule: problems in curriculum order, answer-only loss, test shards, its task and prompts."""

import pytest

from lightningllm.data import DataError
from lightningllm.model import IGNORE_INDEX
from lightningllm.tasks import Task
from lightningllm.tasks.reasoning import ReasoningDataModule, ReasoningTask


def make(tmp_path, **kw) -> ReasoningDataModule:
    args = {"num_train": 400, "num_val": 30, "num_test": 30, "block_size": 1024, "batch_size": 4}
    return ReasoningDataModule(**(args | {"cache_dir": str(tmp_path / "cache")} | kw))


def rows(dm, inputs, targets, problems) -> list:
    """Check that each batch row is one whole problem, from its ``Q:`` to its EOS, then padding; return
    per row its targets without the padding and the problem's tokens with EOS."""
    tok, out = dm.tokenizer, []
    for row, (x, y, p) in enumerate(zip(inputs, targets, problems, strict=True)):
        ids = tok.encode(p.text) + [tok.eos_id]
        n = len(ids) - 1
        assert tok.decode(x[:n].tolist()).startswith("Q: ") and x[:n].tolist() == ids[:-1], row
        assert (x[n:] == tok.eos_id).all() and (y[n:] == IGNORE_INDEX).all(), row  # right padding, no target
        out.append((y[:n], ids))
    return out


def test_each_problem_is_one_sample_in_curriculum_order_with_answer_only_loss(tmp_path):
    dm = make(tmp_path)
    dm.setup("fit")
    assert dm.layout == "records" and dm.tokenizer.kind == "char"
    problems = dm.corpus().problems("train")
    batches = list(dm.train_dataloader())
    assert len(batches) == 100 and dm.num_train_samples() == 400  # 400 problems, 4 a batch, none cut
    for k, (inputs, targets) in enumerate(batches):  # unshuffled: batch k holds problems 4k..4k+3, in order
        assert inputs.shape[1] == max(len(dm.tokenizer.encode(p.text)) for p in problems[4 * k : 4 * k + 4])
        rows(dm, inputs, targets, problems[4 * k : 4 * k + 4])
    # The question is read but not trained on: the targets are the completion's tokens and EOS only.
    first = problems[0]
    y, _ = rows(dm, *batches[0], problems[:4])[0]
    prompt_len = len(dm.tokenizer.encode(first.prompt))
    assert (y[: prompt_len - 1] == IGNORE_INDEX).all()
    assert y[prompt_len - 1 :].tolist() == dm.tokenizer.encode(first.completion) + [dm.tokenizer.eos_id]
    assert [p.num_steps for p in problems[:40]] == [1] * 40  # the curriculum's first stage: 1 step


def test_every_token_can_be_trained_on(tmp_path):
    dm = make(tmp_path, num_train=200, answer_loss_only=False)
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    for y, ids in rows(dm, inputs, targets, dm.corpus().problems("train")[:4]):
        assert y.tolist() == ids[1:]  # the question's tokens too; only the padding is ignored


def test_a_problem_longer_than_a_sample_is_cut_to_its_start(tmp_path):
    dm = make(tmp_path, num_train=200, block_size=32, answer_loss_only=False)
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    first = dm.tokenizer.encode(dm.corpus().problems("train")[0].text)
    assert inputs.shape == (4, 32) and inputs[0].tolist() == first[:32] and targets[0].tolist() == first[1:33]


def test_the_test_shards_hold_the_test_problems(tmp_path):
    dm = make(tmp_path, batch_size=1)
    dm.setup("test")
    problems = dm.corpus().problems("test")
    samples = list(dm.test_dataloader())
    assert len(samples) == len(problems)  # one sample per problem, in order
    assert dm.report["tokens"]["test"] == sum(len(dm.tokenizer.encode(p.text)) + 1 for p in problems)
    for (inputs, targets), p in zip(samples, problems, strict=True):
        [(y, _)] = rows(dm, inputs, targets, [p])
        trained = y != IGNORE_INDEX  # the answer and EOS
        assert y[trained].tolist() == dm.tokenizer.encode(p.completion) + [dm.tokenizer.eos_id]


def test_the_task_and_sample_prompts_come_from_the_held_out_problems(tmp_path):
    dm = make(tmp_path)
    assert isinstance(dm.task, ReasoningTask) and isinstance(dm.task, Task)
    val = dm.corpus().problems("val")
    assert dm.sample_prompts(2) == [val[0].prompt, val[1].prompt]
    assert [e.prompt for e in dm.task.examples("test")] == [p.prompt for p in dm.corpus().problems("test")]
    assert [e.prompt for e in dm.task.examples("heldout")] == [p.prompt for p in dm.corpus().problems("heldout")]


def test_the_evaluation_only_splits_reach_the_task_but_never_the_shards(tmp_path):
    dm = make(tmp_path, num_heldout=12, num_long=6, distractors=0.5)
    assert len(dm.task.examples("heldout")) == 12 and len(dm.task.examples("long")) == 6
    assert dm.corpus().distractors == 0.5
    dm.setup("fit")
    assert set(dm.report["tokens"]) == {"train", "val", "test"}
    same = make(tmp_path, num_heldout=5, num_long=2, distractors=0.5)
    assert same.prepared_dir == dm.prepared_dir  # not prepared, so not in the fingerprint


def test_hparams_hold_the_arguments(tmp_path):
    dm = make(tmp_path, working="plain", step_mix=(1.0, 1.0, 0.0, 0.0, 1.0), curriculum="none", num_long=7)
    assert dm.hparams["working"] == "plain" and dm.hparams["curriculum"] == "none"
    assert dm.hparams["num_train"] == 400 and tuple(dm.hparams["step_mix"]) == (1.0, 1.0, 0.0, 0.0, 1.0)
    assert dm.hparams["num_long"] == 7 and dm.hparams["distractors"] == 0.3
    assert tuple(dm.hparams["stages"]) == (0.1, 0.2, 0.3, 0.4)
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
        ({"restate": "all"}, "data.restate must be one of 'cue', 'clause' (got 'all')"),
        ({"curriculum": "random"}, "data.curriculum must be one of 'none', 'staged' (got 'random')"),
        ({"num_heldout": -1}, "data.num_heldout must be ≥ 0 (got -1)"),
        ({"num_long": 1.5}, "data.num_long must be an integer (got 1.5)"),
        ({"step_mix": (0.0,) * 5}, "data.step_mix must be 5 weights ≥ 0, not all 0 (got [0.0, 0.0, 0.0, 0.0, 0.0])"),
        ({"step_mix": (1.0, 1.0, 1.0)}, "data.step_mix must be 5 weights ≥ 0, not all 0 (got [1.0, 1.0, 1.0])"),
        ({"stages": (0.5, 0.2)}, "data.stages must be 4 rising fractions between 0 and 1 (got [0.5, 0.2])"),
        (
            {"stages": (0.1, 0.3, 0.2, 0.4)},
            "data.stages must be 4 rising fractions between 0 and 1 (got [0.1, 0.3, 0.2, 0.4])",
        ),
        ({"distractors": 1.2}, "data.distractors must be a probability between 0 and 1 (got 1.2)"),
        ({"made_up_names": -0.1}, "data.made_up_names must be a probability between 0 and 1 (got -0.1)"),
        ({"made_up_verbs": 2}, "data.made_up_verbs must be a probability between 0 and 1 (got 2)"),
        ({"made_up_objects": "x"}, "data.made_up_objects must be a probability between 0 and 1 (got 'x')"),
    ],
)
def test_every_setting_is_checked_at_construction_in_one_line_naming_it(tmp_path, setting, message):
    with pytest.raises(DataError) as refused:
        make(tmp_path, **setting)
    assert str(refused.value) == message


def test_fewer_problems_than_a_batch_still_train_and_an_empty_test_split_says_which_number_to_raise(tmp_path):
    dm = make(tmp_path, num_train=3, num_test=0, batch_size=32)
    dm.setup("fit")  # one sample per problem: 3 problems make one step, filled up with rows that weigh nothing
    (inputs, targets), *rest = list(dm.train_dataloader())
    assert not rest and inputs.shape[0] == 32 and (targets[3:] == IGNORE_INDEX).all()
    assert (targets[:3] != IGNORE_INDEX).any(dim=1).all()
    with pytest.raises(
        DataError,
        match=r"^too little test data: the test split of the generated reasoning corpus holds no record; "
        r"raise data.num_test \(now 0\)$",
    ):
        dm.setup("test")
