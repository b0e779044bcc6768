"""ReasoningReward: exact match 1.0, plus a small bonus for a completion ending in a well-formed ``Answer: N``."""

import pytest

from lightningllm.tasks.reasoning import ReasoningCorpus, ReasoningReward, ReasoningTask
from lightningllm.tasks.reasoning.rewards import well_formed


def test_a_right_answer_scores_one_plus_the_format_bonus_and_a_malformed_one_nothing():
    example = ReasoningTask(ReasoningCorpus(seed=3, num_train=10, num_val=3)).examples("val")[0]
    wrong = int(example.answer) + 1
    reward = ReasoningReward(format_weight=0.1)
    assert reward(example, example.completion) == pytest.approx(1.1)  # the reference completion
    assert reward(example, f" Answer: {example.answer}\n") == pytest.approx(1.1)
    assert reward(example, f" Answer: {wrong}") == pytest.approx(0.1)  # wrong, but well-formed
    assert reward(example, f" Answer: {example.answer} and more") == 1.0  # right, but not the final line
    assert reward(example, f" Answer: {example.answer}x") == 0.0  # malformed
    assert reward(example, " Answer: 3.5") == 0.0
    assert reward(example, " no answer at all") == 0.0
    assert ReasoningReward(format_weight=0)(example, example.completion) == 1.0


def test_well_formed_reads_the_last_answer_line():
    assert well_formed("x. Answer: 12") and well_formed("Answer: -3 \n")
    assert not well_formed("Answer: 12. Answer:") and not well_formed("Answer: twelve") and not well_formed("")


def test_a_negative_format_weight_is_refused_in_one_line():
    with pytest.raises(ValueError, match="ReasoningReward.format_weight must be a number >= 0"):
        ReasoningReward(format_weight=-0.1)
