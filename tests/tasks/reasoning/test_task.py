"""ReasoningTask: held-out problems as examples, scored by exact match of the last ``Answer: N``."""

from lightningllm.tasks import Example
from lightningllm.tasks.base import mean_scores
from lightningllm.tasks.reasoning import ReasoningCorpus, ReasoningTask


def test_examples_are_the_problems_with_their_answer_and_step_group():
    corpus = ReasoningCorpus(seed=3, num_train=10, num_val=9, num_test=6, num_heldout=10, num_long=3)
    task = ReasoningTask(corpus)
    assert (task.name, task.metric) == ("reasoning", "exact_match")
    for split in ("val", "test", "heldout", "long"):
        examples, problems = task.examples(split), corpus.problems(split)
        assert examples == [Example(p.prompt, p.completion, str(p.answer), f"{p.num_steps}-step") for p in problems]
    assert [e.group for e in task.examples("val")[:5]] == ["1-step", "2-step", "3-step", "4-step", "5-step"]
    assert [e.group for e in task.examples("heldout")[:6]] == ["1-step", "2-step", "3-step", "4-step", "5-step"] * 1 + [
        "1-step"
    ]
    assert [e.group for e in task.examples("long")] == ["6-step", "7-step", "8-step"]


def test_a_completion_scores_one_only_when_its_last_answer_is_right():
    task = ReasoningTask(ReasoningCorpus(seed=3, num_train=10, num_val=3))
    example = task.examples("val")[0]
    right = example.completion
    assert task.score(example, right) == 1.0
    assert task.score(example, f" Answer: {int(example.answer) + 1}") == 0.0
    assert task.score(example, f" Answer: {int(example.answer) + 1}. Answer: {example.answer}") == 1.0
    assert task.score(example, f" Answer: {example.answer}x") == 0.0  # malformed
    assert task.score(example, " no answer at all") == 0.0


def test_mean_scores_per_step_group():
    task = ReasoningTask(ReasoningCorpus(seed=3, num_train=10, num_val=10))
    examples = task.examples("val")  # 1- to 5-step, twice
    completions = [e.completion if i < 7 else "Answer: -1" for i, e in enumerate(examples)]
    scores = mean_scores(task, examples, completions)
    assert scores == {"1-step": 1.0, "2-step": 1.0, "3-step": 0.5, "4-step": 0.5, "5-step": 0.5, "all": 7 / 10}
