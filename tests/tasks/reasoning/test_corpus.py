"""Behaviour of the built-in reasoning corpus: determinism, disjoint splits, ranges, correct working."""

from __future__ import annotations

import json
import re

import pytest

from lightningllm.tasks.reasoning.corpus import (
    NAMES,
    OBJECTS,
    PHRASES,
    WORKING_STYLES,
    Problem,
    ReasoningCorpus,
    export_jsonl,
    parse_answer,
    split_of,
)

EQUATION = re.compile(r"(\d+) ([+-]) (\d+) = (\d+)\.")


@pytest.fixture(scope="module")
def corpus() -> ReasoningCorpus:
    return ReasoningCorpus(seed=7, num_train=3000, num_val=300, num_test=300, curriculum="none")


def numbers(p: Problem) -> tuple:
    return (p.start, p.steps)


def test_same_seed_same_problems_other_seed_differs():
    a = ReasoningCorpus(seed=3, num_train=200).problems("train")
    b = ReasoningCorpus(seed=3, num_train=200).problems("train")
    c = ReasoningCorpus(seed=4, num_train=200).problems("train")
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in a] != [p.text for p in c]


def test_splits_are_disjoint_by_number_sequence(corpus):
    seen = {split: {numbers(p) for p in corpus.problems(split)} for split in ("train", "val", "test")}
    assert not seen["train"] & seen["test"]
    assert not seen["train"] & seen["val"]
    assert not seen["val"] & seen["test"]
    for split in ("train", "val", "test"):
        assert all(split_of(p.start, p.steps) == split for p in corpus.problems(split))


def test_split_of_is_stable_and_spreads():
    assert split_of(17, (("+", 25), ("-", 9))) == split_of(17, [("+", 25), ("-", 9)])
    counts = {s: 0 for s in ("train", "val", "test")}
    for start in range(100):
        for n in range(100):
            counts[split_of(start, (("+", n),))] += 1
    assert 0.85 < counts["train"] / 10_000 < 0.95
    assert counts["val"] > 300 and counts["test"] > 300


def test_numbers_stay_in_range(corpus):
    for split in ("train", "val", "test"):
        for p in corpus.problems(split):
            assert 1 <= p.num_steps <= 3
            assert 0 <= p.start <= 99
            assert all(op in "+-" and 0 <= n <= 99 for op, n in p.steps)
            assert all(0 <= v <= 999 for v in p.values)


def test_val_and_test_are_balanced_over_step_counts(corpus):
    for split in ("val", "test"):
        counts = [sum(p.num_steps == k for p in corpus.problems(split)) for k in (1, 2, 3)]
        assert counts == [100, 100, 100]


@pytest.mark.parametrize("working", WORKING_STYLES)
def test_every_step_equation_is_correct_and_answer_matches(working):
    problems = ReasoningCorpus(seed=11, working=working, num_train=500).problems("train")
    for p in problems:
        assert p.prompt == "Q: " + p.question + "\nA:"
        assert p.text == p.prompt + p.completion
        assert p.completion.startswith(" ") and p.completion.endswith(f"Answer: {p.answer}")
        equations = EQUATION.findall(p.completion)
        assert len(equations) == p.num_steps
        chain = [p.start]
        for (a, op, b, c), (step_op, step_n) in zip(equations, p.steps, strict=True):
            a, b, c = int(a), int(b), int(c)
            assert (op, b) == (step_op, step_n) and a == chain[-1]
            assert c == (a + b if op == "+" else a - b)
            chain.append(c)
        assert chain[-1] == p.answer == parse_answer(p.completion)


def test_digit_working_columns_are_right():
    p = Problem("Mia", "She", "apples", 17, (("+", 25), ("-", 9)), "q", working="digits")
    expected = [
        " Mia starts with 17.",
        " 017+025: 7+5+0=2c1, 1+2+1=4c0, 0+0+0=0c0, so 17 + 25 = 42.",
        " 042-009: 2-9-0=3b1, 4-0-1=3b0, 0-0-0=0b0, so 42 - 9 = 33.",
        " Answer: 33",
    ]
    assert p.completion == "".join(expected)
    assert Problem("Mia", "She", "apples", 17, (("+", 25),), "q", working="reversed").completion == (
        " Mia starts with 17. 017+025: 240 so 17 + 25 = 42. Answer: 42"
    )


def test_example_question_reads_naturally():
    p = ReasoningCorpus(seed=5, num_train=50).problems("train")[0]
    assert p.question.startswith(f"{p.name} has {p.start} ")
    assert p.question.endswith(f"How many {p.obj} does {p.name} have now?")


def test_vocabulary_of_names_objects_and_phrasings_is_used(corpus):
    problems = corpus.problems("train")
    names = {p.name for p in problems}
    objects = {p.obj for p in problems}
    assert len(NAMES) >= 30 and len(names) >= 30
    assert len(OBJECTS) >= 30 and len(objects) >= 30
    questions = " ".join(p.question for p in problems)
    for op, phrases in PHRASES.items():
        used = {ph for ph in phrases if re.search(re.escape(ph).replace(r"\{n\}", r"\d+"), questions)}
        assert len(used) >= 8, op


def test_plural_forms_follow_the_count(corpus):
    singular_of = {plural: singular for singular, plural in OBJECTS}
    problems = corpus.problems("train")
    ones = [p for p in problems if p.start == 1]
    assert ones and all(f"has 1 {singular_of[p.obj]}." in p.question for p in ones)
    assert all(f"has {p.start} {p.obj}." in p.question for p in problems if p.start != 1)


def test_staged_curriculum_puts_one_step_problems_first():
    corpus = ReasoningCorpus(seed=1, num_train=1000, curriculum="staged", stages=(0.2, 0.5))
    problems = corpus.problems("train")
    assert all(p.num_steps == 1 for p in problems[:200])
    assert all(p.num_steps <= 2 for p in problems[:500])
    assert any(p.num_steps == 2 for p in problems[200:500])
    assert any(p.num_steps == 3 for p in problems[500:])


def test_step_mix_can_leave_out_longer_problems():
    corpus = ReasoningCorpus(num_train=200, num_test=60, step_mix=(1, 0, 0))
    assert all(p.num_steps == 1 for split in ("train", "test") for p in corpus.problems(split))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="working"):
        ReasoningCorpus(working="roman")
    with pytest.raises(ValueError, match="split"):
        ReasoningCorpus(num_train=5).problems("dev")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Mia starts with 17. 17 + 25 = 42. Answer: 42", 42),
        ("Answer: 7", 7),
        ("Answer: 3. Answer: 12", 12),  # the last one counts
        ("Answer:  0.", 0),
        ("Answer: 5 and Answer: x", None),  # the last one is malformed
        ("Answer: 4x", None),
        ("Answer: 2.5", None),
        ("Answer:", None),
        ("17 + 25 = 42.", None),
        ("", None),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_jsonl_export_round_trips(tmp_path, corpus):
    problems = corpus.problems("test")[:20]
    path = tmp_path / "test.jsonl"
    export_jsonl(problems, path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"prompt": p.prompt, "answer": p.answer, "steps": p.num_steps} for p in problems]


def test_as_a_corpus_every_split_is_written_with_the_question_as_context():
    from lightningllm.data.sources import CleaningReport

    corpus = ReasoningCorpus(seed=2, num_train=20, num_val=6, num_test=3)
    report = CleaningReport()
    documents = list(corpus.documents(report))
    assert [split for split, _, _ in documents] == ["train"] * 20 + ["val"] * 6 + ["test"] * 3
    problems = [p for split in ("train", "val", "test") for p in corpus.problems(split)]
    for (_, segments, eos), p in zip(documents, problems, strict=True):
        assert segments == [(p.prompt, False), (p.completion, True)] and eos
    assert report.documents_kept == 29 and report.bytes_kept == sum(len(p.text) for p in problems)
    whole = ReasoningCorpus(seed=2, num_train=20, answer_loss_only=False)
    assert next(iter(whole.documents(CleaningReport())))[1] == [(whole.problems("train")[0].text, True)]
    assert whole.fingerprint() != corpus.fingerprint() and corpus.size_bytes() == 0
