"""Behaviour of the built-in reasoning corpus: determinism, disjoint splits and wordings, ranges, correct working."""

from __future__ import annotations

import json
import random
import re

import pytest

from lightningllm.tasks.reasoning.corpus import (
    WORKING_STYLES,
    Problem,
    ReasoningCorpus,
    export_jsonl,
    parse_answer,
    split_of,
)
from lightningllm.tasks.reasoning.lexicon import (
    GAIN_EVENTS,
    GAIN_VERBS,
    LOSS_EVENTS,
    LOSS_VERBS,
    NAMES,
    OBJECTS,
    RELATIVES,
)
from lightningllm.tasks.reasoning.parse import parse_working, pattern
from lightningllm.tasks.reasoning.wording import (
    CONNECTIVES,
    DISTRACTORS,
    HELD_OUT,
    OPENINGS,
    QUESTIONS,
    SEEN,
    STEPS,
    held_out_part,
    made_up_object,
    made_up_verb,
)

EQUATION = re.compile(r"(\d+) ([+-]) (\d+) = (\d+)\.")
PREPARED = ("train", "val", "test")


@pytest.fixture(scope="module")
def corpus() -> ReasoningCorpus:
    return ReasoningCorpus(seed=7, num_train=3000, num_val=250, num_test=250, num_heldout=250, num_long=150)


def numbers(p: Problem) -> tuple:
    return (p.start, p.steps)


def sentences(p: Problem) -> list[str]:
    """The question's sentences, connective stripped and lower-cased at the start, as the templates are written."""
    out = []
    for sentence in re.split(r"(?<=[.?]) (?=[A-Z0-9])", p.question):
        text = sentence[:1].lower() + sentence[1:]
        for connective in CONNECTIVES:
            text = text.removeprefix(connective)
        out.append(text)
    return out


def clauses(text: str) -> list[str]:
    """A step sentence's clauses: a gerund clause ("after selling 3 of them, ") and the rest."""
    if text.startswith("after "):
        head, rest = text.split(", ", 1)
        return [head + ", ", rest]
    return [text]


def test_the_lexicon_is_large_and_each_entry_can_be_found_on_its_own():
    assert len(NAMES) >= 300 and {p for _, p in NAMES} == {"She", "He"} and len({n for n, _ in NAMES}) == len(NAMES)
    assert len(OBJECTS) >= 200 and any(" " in singular for singular, _ in OBJECTS)
    assert len(GAIN_VERBS) >= 30 and len(LOSS_VERBS) >= 30
    assert {"Oluwaseun", "Bartholomew", "Xiomara"} <= {n for n, _ in NAMES}
    # No object is a whole word of another entry or of the fixed text, or a held-out one could not be searched for.
    fixed = [s.template for op in STEPS for s in STEPS[op]] + [*OPENINGS, *QUESTIONS, *DISTRACTORS, *RELATIVES]
    fixed += [f for v in GAIN_VERBS + LOSS_VERBS for f in v] + [f for e in GAIN_EVENTS + LOSS_EVENTS for f in e]
    for singular, plural in OBJECTS:
        others = [f for o in OBJECTS if o != (singular, plural) for f in o]
        for form in (singular, plural):
            assert not [t for t in fixed + others if re.search(rf"\b{re.escape(form)}\b", t, re.I)], form
    words = {w.lower() for t in fixed + [f for o in OBJECTS for f in o] for w in re.findall(r"[A-Za-z]+", t)}
    assert not [n for n, _ in NAMES if n.lower() in words]


def test_cue_words_tell_the_operation_in_every_structure():
    plus, minus = ("more", "another", "extra"), ("of them", "of {poss}", "away", "fewer")
    assert all(any(c in s.template for c in plus) and not any(c in s.template for c in minus) for s in STEPS["+"])
    assert all(any(c in s.template for c in minus) and not any(c in s.template for c in plus) for s in STEPS["-"])
    for template in OPENINGS + QUESTIONS + DISTRACTORS:
        assert not any(re.search(rf"\b{c}\b", template) for c in plus + minus), template
    assert len(STEPS["+"]) >= 6 and len(STEPS["-"]) >= 6


def test_held_out_shares_are_fixed_and_at_least_two_of_each_list():
    for items, label in [
        (NAMES, "names"), (OBJECTS, "objects"), (GAIN_VERBS, "verbs+"), (LOSS_VERBS, "verbs-"),
        (STEPS["+"], "steps+"), (STEPS["-"], "steps-"), (OPENINGS, "openings"), (QUESTIONS, "questions"),
        (GAIN_EVENTS, "events+"), (LOSS_EVENTS, "events-"),
    ]:  # fmt: skip
        held = held_out_part(items, label)
        assert held == held_out_part(items, label) and len(held) >= 2
        assert len(held) <= max(2, 0.2 * len(items)) and set(held) < set(items)
    assert set(HELD_OUT.names).isdisjoint(SEEN.names) and set(HELD_OUT.objects).isdisjoint(SEEN.objects)
    for op in "+-":
        assert set(HELD_OUT.verbs[op]).isdisjoint(SEEN.verbs[op])
        assert set(SEEN.verbs[op]) | set(HELD_OUT.verbs[op]) == set(GAIN_VERBS if op == "+" else LOSS_VERBS)


def test_same_seed_same_problems_other_seed_differs():
    for split in ("train", "heldout", "long"):
        a = ReasoningCorpus(seed=3, num_train=200, num_heldout=20, num_long=6).problems(split)
        b = ReasoningCorpus(seed=3, num_train=200, num_heldout=20, num_long=6).problems(split)
        c = ReasoningCorpus(seed=4, num_train=200, num_heldout=20, num_long=6).problems(split)
        assert [p.text for p in a] == [p.text for p in b]
        assert [p.text for p in a] != [p.text for p in c]


def test_splits_are_disjoint_by_number_sequence(corpus):
    seen = {split: {numbers(p) for p in corpus.problems(split)} for split in PREPARED + ("heldout", "long")}
    assert not seen["train"] & seen["test"]
    assert not seen["train"] & seen["val"]
    assert not seen["val"] & seen["test"]
    assert not seen["train"] & (seen["heldout"] | seen["long"])
    for split in PREPARED:
        assert all(split_of(p.start, p.steps) == split for p in corpus.problems(split))
    for split in ("heldout", "long"):  # the test share of the number sequences
        assert all(split_of(p.start, p.steps) == "test" for p in corpus.problems(split))


def test_split_of_is_stable_and_spreads():
    assert split_of(17, (("+", 25), ("-", 9))) == split_of(17, [("+", 25), ("-", 9)])
    counts = {s: 0 for s in PREPARED}
    for start in range(100):
        for n in range(100):
            counts[split_of(start, (("+", n),))] += 1
    assert 0.85 < counts["train"] / 10_000 < 0.95
    assert counts["val"] > 300 and counts["test"] > 300


def test_numbers_stay_in_range_and_step_counts_are_as_asked(corpus):
    for split, allowed in [*((s, range(1, 6)) for s in PREPARED), ("heldout", range(1, 6)), ("long", range(6, 9))]:
        problems = corpus.problems(split)
        assert {p.num_steps for p in problems} == set(allowed), split
        for p in problems:
            assert 0 <= p.start <= 99
            assert all(op in "+-" and 0 <= n <= 99 for op, n in p.steps)
            assert all(0 <= v <= 999 for v in p.values)


def test_evaluation_splits_cycle_their_step_counts(corpus):
    for split in ("val", "test", "heldout"):
        assert [p.num_steps for p in corpus.problems(split)[:10]] == [1, 2, 3, 4, 5] * 2
    assert [p.num_steps for p in corpus.problems("long")[:6]] == [6, 7, 8] * 2


@pytest.mark.parametrize("working", WORKING_STYLES)
def test_every_step_equation_is_correct_and_the_working_restates_the_question(working):
    problems = ReasoningCorpus(seed=11, working=working, num_train=500, curriculum="none").problems("train")
    for p in problems:
        assert p.prompt == "Q: " + p.question + "\nA:"
        assert p.text == p.prompt + p.completion
        assert p.completion.startswith(f" {p.name} starts with {p.start}.")
        assert p.completion.endswith(f"Answer: {p.answer}")
        equations = EQUATION.findall(p.completion)
        assert len(equations) == p.num_steps
        chain = [p.start]
        for (a, op, b, c), (step_op, step_n) in zip(equations, p.steps, strict=True):
            a, b, c = int(a), int(b), int(c)
            assert (op, b) == (step_op, step_n) and a == chain[-1]
            assert c == (a + b if op == "+" else a - b) and 0 <= c <= 999
            chain.append(c)
        assert chain[-1] == p.answer == parse_answer(p.completion)
        assert parse_working(p.completion) == (p.name, p.start, p.steps)
        for i, cue in enumerate(p.cues):  # each step restates its cue, copied from the question
            assert f" Step {i + 1}: {cue}:" in p.completion and cue in p.question


def test_digit_working_columns_are_right():
    p = Problem("Mia", "She", "apples", 17, (("+", 25), ("-", 9)), "q", ("25 more", "9 of them"), working="digits")
    expected = [
        " Mia starts with 17.",
        " Step 1: 25 more: 017+025: 7+5+0=2c1, 1+2+1=4c0, 0+0+0=0c0, so 17 + 25 = 42.",
        " Step 2: 9 of them: 042-009: 2-9-0=3b1, 4-0-1=3b0, 0-0-0=0b0, so 42 - 9 = 33.",
        " Answer: 33",
    ]
    assert p.completion == "".join(expected)
    assert Problem("Mia", "She", "apples", 17, (("+", 25),), "q", ("25 more",), working="reversed").completion == (
        " Mia starts with 17. Step 1: 25 more: 017+025: 240 so 17 + 25 = 42. Answer: 42"
    )


def opening_of(p: Problem) -> str | None:
    """The opening template of a problem's question (name-first openings are matched before lower-casing)."""
    first = re.split(r"(?<=[.?]) (?=[A-Z0-9])", p.question)[0]
    return next((o for o in OPENINGS if pattern(o).fullmatch(first) or pattern(o).fullmatch(sentences(p)[0])), None)


def verb_hits(text: str, vocab) -> list[str]:
    """The verbs and event verbs of ``vocab`` found in ``text``, each in the place its structures put it."""
    hits = []
    for op in "+-":
        for third, gerund, participle in vocab.verbs[op]:
            if re.search(rf"\b({third} (\d|another)|{gerund} \d|(is|are) {participle}\b)", text):
                hits.append(third)
        for plural_verb, singular_verb in vocab.events[op]:
            if re.search(rf"\b(more|them) ({plural_verb}|{singular_verb})\.", text):
                hits.append(plural_verb)
    return hits


def test_the_wording_varies_and_names_objects_verbs_and_structures_are_used(corpus):
    problems = corpus.problems("train")
    assert len({p.name for p in problems}) >= 200 and len({p.obj for p in problems}) >= 150
    parts = [sentences(p) for p in problems]
    steps = [c for t in parts for s in t[1:-1] for c in clauses(s)]
    for op in "+-":
        used = {s.key for s in SEEN.steps[op] for c in steps if pattern(s.template, op).fullmatch(c)}
        assert used == {s.key for s in SEEN.steps[op]}, op
        verbs = {v for v in SEEN.verbs[op] if re.search(rf"\b{v[0]} (\d|another)", "\n".join(steps))}
        assert len(verbs) >= 0.8 * len(SEEN.verbs[op])
    assert {opening_of(p) for p in problems} == set(SEEN.openings)
    assert {q for q in SEEN.questions if any(pattern(q).fullmatch(t[-1]) for t in parts)} == set(SEEN.questions)


def test_made_up_names_are_new_almost_every_time_and_never_a_word_of_the_lexicon_or_text():
    corpus = ReasoningCorpus(seed=7, num_train=3000, num_heldout=100, num_long=60, made_up_names=0.5)
    listed = {n for n, _ in NAMES}
    problems = corpus.problems("train")
    made_up = [p.name for p in problems if p.name not in listed]
    assert 0.45 < len(made_up) / len(problems) < 0.55  # made_up_names=0.5
    assert len(set(made_up)) > 0.9 * len(made_up)
    assert all(re.fullmatch(r"[A-Z][a-z]{2,}", n) for n in made_up)
    fixed = [s.template for op in STEPS for s in STEPS[op]] + [*OPENINGS, *QUESTIONS, *DISTRACTORS, *RELATIVES]
    fixed += [f for entry in GAIN_VERBS + LOSS_VERBS + GAIN_EVENTS + LOSS_EVENTS + OBJECTS for f in entry]
    words = {w.lower() for t in fixed + sorted(listed) for w in re.findall(r"[A-Za-z]+", t)}
    assert not {n.lower() for n in made_up} & words
    assert any(p.name not in listed for p in corpus.problems("long"))
    assert all(p.name in listed for p in corpus.problems("heldout"))
    plain = ReasoningCorpus(seed=7, num_train=300, made_up_names=0.0).problems("train")
    assert all(p.name in {n for n, _ in SEEN.names} for p in plain)


def test_made_up_verbs_and_objects_fill_problems_outside_the_held_out_split_and_are_no_word_of_the_text():
    fixed = [s.template for op in STEPS for s in STEPS[op]] + [*OPENINGS, *QUESTIONS, *DISTRACTORS, *RELATIVES]
    fixed += [f for entry in GAIN_VERBS + LOSS_VERBS + GAIN_EVENTS + LOSS_EVENTS + OBJECTS for f in entry]
    words = {w.lower() for t in fixed + [n for n, _ in NAMES] for w in re.findall(r"[A-Za-z]+", t)}
    words |= {"she", "he", "her", "him", "his"}
    rng = random.Random(0)
    for third, gerund, participle in (made_up_verb(rng) for _ in range(3000)):
        stem = third.removesuffix("s")
        assert (gerund, participle) == (stem + "ing", stem + "ed") and not {stem, third, gerund, participle} & words
    for singular, plural in (made_up_object(rng) for _ in range(3000)):
        assert plural == singular + "s" and not {singular, plural} & words
    objects = ReasoningCorpus(seed=7, num_train=300, made_up_objects=0.5).problems("train")
    assert 0.35 < sum(p.obj not in {pl for _, pl in OBJECTS} for p in objects) / len(objects) < 0.65
    corpus = ReasoningCorpus(seed=7, num_train=1500, num_heldout=100, made_up_names=0.0, made_up_verbs=0.5)
    slots, made_up = 0, 0
    for p in corpus.problems("train"):
        for clause in (c for sentence in sentences(p)[1:-1] for c in clauses(sentence)):
            if any(s.verbs == "verbs" and pattern(s.template, op).fullmatch(clause) for op in "+-" for s in STEPS[op]):
                slots += 1
                made_up += any(w not in words for w in re.findall(r"[a-z]+", clause))
    assert 0.4 < made_up / slots < 0.6
    held = ReasoningCorpus(seed=7, num_train=10, num_heldout=100, made_up_verbs=0.0).problems("heldout")
    assert [
        p.text for p in ReasoningCorpus(seed=7, num_train=10, num_heldout=100, made_up_objects=1.0).problems("heldout")
    ] == [p.text for p in held]
    assert [p.text for p in corpus.problems("heldout")] == [p.text for p in held]  # the held-out split is unchanged


def test_a_clause_restating_working_copies_each_steps_clause_as_the_question_writes_it_in_order():
    corpus = ReasoningCorpus(seed=7, num_train=600, num_heldout=60, restate="clause")
    cue = ReasoningCorpus(seed=7, num_train=600, num_heldout=60)
    for split in ("train", "heldout"):
        for p, q in zip(corpus.problems(split), cue.problems(split), strict=True):
            assert (p.question, p.steps) == (q.question, q.steps)  # only the working differs
            position = 0
            for clause, short in zip(p.cues, q.cues, strict=True):
                position = p.question.index(clause, position) + len(clause)  # in the question's order, verbatim
                assert short in clause and p.question[position] in ".,"
            assert parse_working(p.completion) == (p.name, p.start, p.steps)
            assert f"Step 1: {p.cues[0]}: " in p.completion


def test_pronouns_and_plurals_agree():
    problems = ReasoningCorpus(seed=5, num_train=1500, curriculum="none", made_up_objects=0.0).problems("train")
    for p in problems:
        wrong = r"\b(his|him|he|He|His)\b" if p.pronoun == "She" else r"\b(her|she|She|Her)\b"
        assert not re.search(wrong, p.question), p.question
        singular = dict((pl, s) for s, pl in OBJECTS)[p.obj]
        opening = p.question.split(". ")[0]
        if p.start == 1:
            assert re.search(rf"\b1 {re.escape(singular)}\b", opening), opening
        else:
            assert re.search(rf"\b{p.start} {re.escape(p.obj)}\b", opening), opening
    assert any(p.start == 1 for p in problems)


def test_no_held_out_name_object_verb_or_structure_occurs_in_train_val_or_test(corpus):
    problems = [p for split in PREPARED for p in corpus.problems(split)]
    text = "\n".join(p.question for p in problems)
    for name, _ in HELD_OUT.names:
        assert not re.search(rf"\b{name}\b", text), name
    for singular, plural in HELD_OUT.objects:
        assert not re.search(rf"\b({re.escape(singular)}|{re.escape(plural)})\b", text), plural
    assert verb_hits(text, HELD_OUT) == []
    assert verb_hits(text, SEEN)  # the search finds verbs where they are
    held = [(op, s) for op in "+-" for s in held_out_part(STEPS[op], f"steps{op}")]
    for p in problems:
        parts = sentences(p)
        assert opening_of(p) in SEEN.openings
        assert not any(pattern(q).fullmatch(parts[-1]) for q in held_out_part(QUESTIONS, "questions"))
        for clause in (c for s in parts[1:-1] for c in clauses(s)):
            assert not any(pattern(s.template, op).fullmatch(clause) for op, s in held), clause


def test_every_held_out_problem_is_worded_with_held_out_material_in_every_sentence(corpus):
    held_names, held_objects = {n for n, _ in HELD_OUT.names}, {pl for _, pl in HELD_OUT.objects}
    held_steps = [(op, s) for op in "+-" for s in held_out_part(STEPS[op], f"steps{op}")]
    for p in corpus.problems("heldout"):
        assert p.name in held_names and p.obj in held_objects
        parts = sentences(p)
        assert opening_of(p) in HELD_OUT.openings
        assert any(pattern(q).fullmatch(parts[-1]) for q in HELD_OUT.questions)
        middle = parts[1:-1]
        distractors = [s for s in middle if any(pattern(d).fullmatch(s) for d in DISTRACTORS)]
        steps = [c for s in middle if s not in distractors for c in clauses(s)]
        assert len(steps) == p.num_steps
        for clause in steps:
            structure = any(pattern(s.template, op).fullmatch(clause) for op, s in held_steps)
            assert structure or verb_hits(clause, HELD_OUT), clause
            assert not verb_hits(clause, SEEN), clause
        for sentence in distractors:
            objects = [pl for _, pl in OBJECTS if re.search(rf"\b{re.escape(pl)}\b", sentence)]
            assert all(o in held_objects for o in objects), sentence


def test_distractors_are_about_someone_or_something_else_and_never_in_the_working(corpus):
    problems = corpus.problems("train")
    with_distractors = [p for p in problems if p.distractors]
    assert 0.2 < len(with_distractors) / len(problems) < 0.45
    for p in with_distractors:
        assert parse_working(p.completion) == (p.name, p.start, p.steps)
        worked = {p.start, *(int(x) for eq in EQUATION.findall(p.completion) for x in eq if x.isdigit())}
        worked |= {int(x) for cue in p.cues for x in re.findall(r"\d+", cue)}
        assert worked.isdisjoint(p.distractors)
        for d in p.distractors:
            assert re.search(rf"\b{d}\b", p.question)
        for sentence in sentences(p):
            if any(pattern(t).fullmatch(sentence) for t in DISTRACTORS):
                assert not re.search(rf"\b{re.escape(p.obj)}\b", sentence), sentence
    assert not any(p.distractors for p in ReasoningCorpus(seed=7, num_train=300, distractors=0.0).problems("train"))


def test_staged_curriculum_lets_longer_problems_in_stage_by_stage():
    corpus = ReasoningCorpus(seed=1, num_train=1000, curriculum="staged", stages=(0.1, 0.2, 0.4, 0.6))
    problems = corpus.problems("train")
    for end, top in [(100, 1), (200, 2), (400, 3), (600, 4)]:
        assert all(p.num_steps <= top for p in problems[:end])
        assert any(p.num_steps == top for p in problems[end - 100 : end])
    assert any(p.num_steps == 5 for p in problems[600:])


def test_step_mix_can_leave_out_longer_problems():
    corpus = ReasoningCorpus(num_train=200, num_test=60, step_mix=(1, 0, 0, 0, 0))
    assert all(p.num_steps == 1 for split in ("train", "test") for p in corpus.problems(split))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="working"):
        ReasoningCorpus(working="roman")
    with pytest.raises(ValueError, match="step_mix"):
        ReasoningCorpus(step_mix=(1, 1, 1))
    with pytest.raises(ValueError, match="stages"):
        ReasoningCorpus(stages=(0.2, 0.1, 0.3, 0.4))
    with pytest.raises(ValueError, match="distractors"):
        ReasoningCorpus(distractors=1.5)
    with pytest.raises(ValueError, match="made_up_names"):
        ReasoningCorpus(made_up_names=2)
    with pytest.raises(ValueError, match="made_up_verbs"):
        ReasoningCorpus(made_up_verbs=-1)
    with pytest.raises(ValueError, match="restate"):
        ReasoningCorpus(restate="sentence")
    with pytest.raises(ValueError, match="made_up_objects"):
        ReasoningCorpus(made_up_objects=1.5)
    with pytest.raises(ValueError, match="split"):
        ReasoningCorpus(num_train=5).problems("dev")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Mia starts with 17. Step 1: 25 more: 17 + 25 = 42. Answer: 42", 42),
        ("Answer: 7", 7),
        ("Answer: 3. Answer: 12", 12),  # the last one counts
        ("Answer:  0.", 0),
        ("Answer: -4", -4),
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


def test_as_a_corpus_only_train_val_and_test_are_written_with_the_question_as_context():
    from lightningllm.data.sources import CleaningReport

    corpus = ReasoningCorpus(seed=2, num_train=20, num_val=6, num_test=3, num_heldout=5, num_long=4)
    report = CleaningReport()
    documents = list(corpus.documents(report))
    assert [split for split, _, _ in documents] == ["train"] * 20 + ["val"] * 6 + ["test"] * 3
    problems = [p for split in PREPARED for p in corpus.problems(split)]
    for (_, segments, eos), p in zip(documents, problems, strict=True):
        assert segments == [(p.prompt, False), (p.completion, True)] and eos
    assert report.documents_kept == 29 and report.bytes_kept == sum(len(p.text) for p in problems)
    assert report.layout == "records"  # one sample per problem, never a window across two
    whole = ReasoningCorpus(seed=2, num_train=20, answer_loss_only=False)
    assert next(iter(whole.documents(CleaningReport())))[1] == [(whole.problems("train")[0].text, True)]
    assert whole.fingerprint() != corpus.fingerprint() and corpus.size_bytes() == 0
    assert ReasoningCorpus(distractors=0.1).fingerprint() != ReasoningCorpus().fingerprint()
    # The evaluation-only splits are not prepared, so their sizes leave the prepared corpus as it is.
    assert ReasoningCorpus(num_heldout=7, num_long=9).fingerprint() == ReasoningCorpus().fingerprint()
