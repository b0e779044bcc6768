"""Reading the corpus back: every question states exactly its numbers, and the working restates them."""

from __future__ import annotations

import pytest

from lightningllm.tasks.reasoning.corpus import Problem, ReasoningCorpus
from lightningllm.tasks.reasoning.parse import parse_question, parse_working

SPLITS = ("train", "val", "test", "heldout", "long")


@pytest.fixture(scope="module")
def corpus() -> ReasoningCorpus:
    return ReasoningCorpus(seed=13, num_train=2000, num_val=100, num_test=100, num_heldout=200, num_long=60)


@pytest.mark.parametrize("split", SPLITS)
def test_every_question_parses_back_to_its_name_and_numbers(corpus, split):
    for p in corpus.problems(split):
        assert parse_question(p.question) == (p.name, p.start, p.steps), p.question
        assert parse_question(p.prompt) == (p.name, p.start, p.steps)  # the prompt form reads the same


def test_questions_with_made_up_names_verbs_and_objects_parse_back():
    corpus = ReasoningCorpus(seed=13, num_train=600, made_up_names=1.0, made_up_verbs=1.0, made_up_objects=1.0)
    for p in corpus.problems("train"):
        assert parse_question(p.question) == (p.name, p.start, p.steps), p.question


def test_questions_with_distractors_and_gerund_clauses_are_among_them(corpus):
    questions = [p.question for p in corpus.problems("train")]
    assert sum(" of them, " in q or " more, " in q for q in questions) > 50  # "After selling 3 of them, she ..."
    assert sum(bool(p.distractors) for p in corpus.problems("train")) > 300


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Mia has 17 apples. She buys 25 more. How many apples does Mia have now?", ("Mia", 17, (("+", 25),))),
        (
            "There are 3 kites in Kofi's box. After selling 2 of them, he finds another 40. It is 5 o'clock. "
            "Then 1 of them breaks. How many kites are left?",
            ("Kofi", 3, (("-", 2), ("+", 40), ("-", 1))),
        ),
        ("At first, Ama holds 1 kite. Her cousin gives her 9 more. How many kites does Ama end up with?",
         ("Ama", 1, (("+", 9),))),
    ],
)  # fmt: skip
def test_hand_written_questions_in_the_corpus_wording_parse(question, expected):
    assert parse_question(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "Mia has 17 apples. She buys 25 more. What now?",  # not one of the question sentences
        "Mia has 17 apples. She juggles 25 more. How many apples does Mia have now?",  # an unknown verb
        "Mia has 17 apples. She buys 25 more. How many apples does Liam have now?",  # another person
        "Mia likes 17 apples. She buys 25 more. How many apples does Mia have now?",  # no opening
    ],
)
def test_a_sentence_outside_the_corpus_wording_is_refused(question):
    with pytest.raises(ValueError, match="reasoning corpus"):
        parse_question(question)


@pytest.mark.parametrize("working", ["plain", "reversed", "digits"])
def test_the_working_parses_back_to_the_problems_numbers(corpus, working):
    again = ReasoningCorpus(seed=13, num_train=200, working=working)
    for p in again.problems("train") + corpus.problems("long"):
        assert parse_working(p.completion) == (p.name, p.start, p.steps)


def test_a_misread_and_a_miscomputed_working_can_be_told_apart():
    p = Problem("Mia", "She", "apples", 17, (("+", 25), ("-", 9)), "q", ("25 more", "9 of them"), "digits")
    misread = p.completion.replace("042-009", "042-008").replace("42 - 9 = 33", "42 - 8 = 34")
    assert parse_working(misread) == ("Mia", 17, (("+", 25), ("-", 8)))  # it read 8: a misreading
    miscomputed = p.completion.replace("42 - 9 = 33", "42 - 9 = 31")
    assert parse_working(miscomputed) == ("Mia", 17, (("+", 25), ("-", 9)))  # it read right, computed wrong
    assert parse_working(" Mia begins with 17.") is None
    assert parse_working(p.completion.replace("Step 2", "Step 3")) is None
    assert parse_working(" Mia starts with 17. Answer: 17") == ("Mia", 17, ())
