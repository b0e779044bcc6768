"""The built-in reasoning corpus: seeded, step-by-step arithmetic word problems (standard library only).

Each problem is a person with some countable objects who gains or loses some of them in 1 to 5 steps
(6 to 8 in the ``long`` split); ``wording.py`` words it, from the names, objects and verbs of
``lexicon.py``, with optional distractor sentences whose numbers must be ignored. Outside the ``heldout``
split, a share of the verbs and objects (and, optionally, names) is made up from syllables, so the
model reads a step by its structure and cue words, not by a word it has memorised. All numbers are
whole: start values and operands lie in 0..99 and every intermediate result in 0..999 (subtractions
never go below zero).

The worked answer copies before it computes: it restates the name and the start it read (``Mia
starts with 17.``), then for every step the words that carry the number and the operation, as
written (``Step 1: 25 more:``), and only then works the step, which opens with the operation they
mean (``017+025: ...`` or ``17 + 25 = 42.``), and ends with ``Answer: N``. How a step is worked is a
choice (``working``): ``plain`` writes only the equation; ``reversed`` writes the zero-padded
operands and the result least-significant digit first; ``digits`` (the default) works column by
column, units first, restating each column's two digits and incoming carry before its result digit
and outgoing carry (``7+5+0=2c1``). Restating the digits splits every column into a copy and a
one-digit sum, which a small GPT learns several times faster than the bare result
(benchmarks/reasoning_recipe.py compares the styles).

Splits: the train/val/test split of a problem is a hash of its numbers and operations
(``split_of``), so no test number sequence is ever seen in training, whatever the words around it.
Two evaluation-only splits are never prepared into shards: ``heldout`` words test-bucket number
sequences with only the held-out names, objects, verbs and structures of ``wording.py`` (none of
which train/val/test ever use), and ``long`` has 6 to 8 steps, worded as in training.
``ReasoningCorpus`` is a ``Corpus`` (``lightningllm.data.prepare``) of the ``records`` layout: one
record per train/val/test problem, one training sample each (``lightningllm.data.shards``), the
question read as context and only the completion trained on (``answer_loss_only``), in generation
order.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lightningllm.tasks.reasoning.wording import HELD_OUT, SEEN, Vocabulary, write_question

if TYPE_CHECKING:
    from lightningllm.data.instruct import Segment
    from lightningllm.data.sources import CleaningReport

Working = Literal["plain", "reversed", "digits"]
Curriculum = Literal["none", "staged"]
Restate = Literal["cue", "clause"]
Split = Literal["train", "val", "test", "heldout", "long"]
WORKING_STYLES: tuple[str, ...] = ("plain", "reversed", "digits")
RESTATE_STYLES: tuple[str, ...] = ("cue", "clause")
SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The splits prepared into shards."""
EVAL_SPLITS: tuple[str, ...] = ("heldout", "long")
"""The evaluation-only splits: scored as a task, never trained or prepared."""
MAX_STEPS = 5
LONG_STEPS: tuple[int, ...] = (6, 7, 8)
MAX_OPERAND = 99
MAX_VALUE = 999
DIGITS = 3  # enough columns for any intermediate result (at most 99 + 8 * 99 = 891)
_ANSWER = re.compile(r"Answer:[ \t]*(-?\d+)(?!\w|\.\d)")  # "Answer: 3x" or "Answer: 3.5" are malformed


@dataclass(frozen=True)
class Problem:
    """One word problem: the numbers, the story around them and the worked answer."""

    name: str
    pronoun: str
    obj: str
    """The object's plural form (``apples``)."""
    start: int
    steps: tuple[tuple[str, int], ...]
    """``(op, operand)`` pairs applied in order; op is ``+`` or ``-``."""
    question: str
    cues: tuple[str, ...]
    """Per step, the words of the question that carry its number and operation (``25 more``)."""
    working: str = "digits"
    distractors: tuple[int, ...] = ()
    """The numbers of the question's distractor sentences (never in the working)."""

    @property
    def values(self) -> tuple[int, ...]:
        """The start value followed by the result of every step."""
        out = [self.start]
        for op, n in self.steps:
            out.append(out[-1] + n if op == "+" else out[-1] - n)
        return tuple(out)

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def prompt(self) -> str:
        return "Q: " + self.question + "\nA:"

    @property
    def completion(self) -> str:
        """The text after ``A:``: the name and start, each step's cue and its working, then ``Answer: N``."""
        parts = [f" {self.name} starts with {self.start}."]
        values = self.values
        for i, ((op, n), cue, a, c) in enumerate(zip(self.steps, self.cues, values[:-1], values[1:], strict=True)):
            parts.append(f" Step {i + 1}: {cue}:" + work_step(a, op, n, c, self.working))
        parts.append(f" Answer: {self.answer}")
        return "".join(parts)

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def work_step(a: int, op: str, b: int, c: int, working: str) -> str:
    """The text of one step ``a op b = c`` in a working style, starting with a space.

    ``digits`` writes ``017+025: 7+5+0=2c1, 1+2+1=4c0, 0+0+0=0c0, so 17 + 25 = 42.``: zero-padded
    operands, then per column (units first) the two digits and the incoming carry (``c``) or
    borrow (``b``), the result digit and the carry or borrow passed on.
    ``reversed`` writes ``017+025: 240 so 17 + 25 = 42.``: the result digits, units first.
    """
    equation = f"{a} {op} {b} = {c}."
    if working == "plain":
        return " " + equation
    if working not in WORKING_STYLES:
        raise ValueError(f"unknown working style {working!r}; choose one of {WORKING_STYLES}")
    da, db = f"{a:0{DIGITS}d}"[::-1], f"{b:0{DIGITS}d}"[::-1]  # units first
    flag = "c" if op == "+" else "b"
    columns, carry = [], 0
    for x, y in zip(da, db, strict=True):
        total = int(x) + int(y) + carry if op == "+" else int(x) - int(y) - carry
        digit, carry_out = total % 10, int(total >= 10 or total < 0)
        columns.append(f"{x}{op}{y}{op}{carry}={digit}{flag}{carry_out}" if working == "digits" else str(digit))
        carry = carry_out
    work = ", ".join(columns) + "," if working == "digits" else "".join(columns)
    return f" {a:0{DIGITS}d}{op}{b:0{DIGITS}d}: {work} so {equation}"


def split_of(start: int, steps: Sequence[tuple[str, int]]) -> str:
    """The split a number sequence belongs to: a stable hash, so splits never share one.

    blake2b rather than ``hash()``, which Python salts per process. 90% train, 5% val, 5% test
    (the ``heldout`` and ``long`` splits draw from the test share).
    """
    key = str(start) + "".join(f"{op}{n}" for op, n in steps)
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 100
    return "train" if bucket < 90 else "val" if bucket < 95 else "test"


class ReasoningCorpus:
    """Seeded lists of word problems per split, with a chosen working style, step mix and distractor rate.

    Args:
        seed: every list is a pure function of the seed and the other arguments.
        working: how steps are worked (``plain``, ``reversed`` or ``digits``).
        restate: what the working restates of each step before working it: ``cue``, the words that
            carry the number and operation (``Step 1: 12 more:``), or ``clause``, the step's whole
            clause as the question writes it (``Step 1: She buys 12 more:``), which the model copies
            on from where the last one ended.
        num_train, num_val, num_test: problems per prepared split.
        num_heldout: problems of the ``heldout`` split (held-out wording, 1 to 5 steps in turn).
        num_long: problems of the ``long`` split (6, 7 and 8 steps in turn).
        step_mix: relative weights of 1- to 5-step problems (val and test cycle through the
            step counts with positive weight, so they stay balanced).
        curriculum: ``"staged"`` orders training problems for an in-order stream: the first
            ``stages[0]`` of it holds only 1-step problems, up to ``stages[1]`` at most 2 steps,
            and so on, then the full mix after ``stages[3]``. ``"none"`` mixes step counts throughout.
        stages: the stream fractions where 2-, 3-, 4- and 5-step problems are let in.
        distractors: the chance that a question has a sentence with an irrelevant number (and,
            with that chance again, a second).
        made_up_names: the share of train/val/test/long problems whose person has a made-up name
            (``wording.made_up_name``: syllables drawn at random, a new name almost every time) rather
            than one of the lexicon's: a name the model cannot recall, only copy. The ``heldout``
            split keeps to the held-out names.
        made_up_verbs: the share of steps (outside the ``heldout`` split) whose verb is made up
            (``wording.made_up_verb``: ``florps 12 more``), so only the structure and its cue words
            tell the operation, as they must for a verb the model has never met.
        made_up_objects: the share of problems (outside the ``heldout`` split) that count made-up
            objects (``wording.made_up_object``: ``glimps``).
        answer_loss_only: as training documents, a problem's question is context (read, not
            trained on) and only its completion is trained on; off trains on the whole text.
    """

    name = "reasoning"
    """Prefix of the prepared corpus folder."""

    def __init__(
        self,
        *,
        seed: int = 1234,
        working: Working = "digits",
        restate: Restate = "cue",
        num_train: int = 60_000,
        num_val: int = 300,
        num_test: int = 300,
        num_heldout: int = 300,
        num_long: int = 300,
        step_mix: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0),
        curriculum: Curriculum = "staged",
        stages: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
        distractors: float = 0.3,
        made_up_names: float = 0.0,
        made_up_verbs: float = 0.5,
        made_up_objects: float = 0.5,
        answer_loss_only: bool = True,
    ):
        if working not in WORKING_STYLES:
            raise ValueError(f"ReasoningCorpus: working must be one of {WORKING_STYLES}, got {working!r}")
        if restate not in RESTATE_STYLES:
            raise ValueError(f"ReasoningCorpus: restate must be one of {RESTATE_STYLES}, got {restate!r}")
        if len(step_mix) != MAX_STEPS or min(step_mix) < 0 or sum(step_mix) <= 0:
            raise ValueError(f"ReasoningCorpus: step_mix needs {MAX_STEPS} non-negative weights, got {step_mix!r}")
        if curriculum not in ("none", "staged"):
            raise ValueError(f"ReasoningCorpus: curriculum must be 'none' or 'staged', got {curriculum!r}")
        if len(stages) != MAX_STEPS - 1 or list(stages) != sorted(stages) or not 0 <= stages[0] <= stages[-1] <= 1:
            raise ValueError(f"ReasoningCorpus: stages needs {MAX_STEPS - 1} rising fractions, got {stages!r}")
        shares = {
            "distractors": distractors, "made_up_names": made_up_names, "made_up_verbs": made_up_verbs,
            "made_up_objects": made_up_objects,
        }  # fmt: skip
        for setting, value in shares.items():
            if not 0 <= value <= 1:
                raise ValueError(f"ReasoningCorpus: {setting} must be a probability in [0, 1], got {value!r}")
        self.seed, self.working, self.restate, self.step_mix = seed, working, restate, tuple(step_mix)
        self.curriculum, self.stages, self.answer_loss_only = curriculum, tuple(stages), answer_loss_only
        self.distractors, self.made_up_names, self.made_up_verbs = distractors, made_up_names, made_up_verbs
        self.made_up_objects = made_up_objects
        self.sizes = {
            "train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout, "long": num_long,
        }  # fmt: skip
        self._cache: dict[str, list[Problem]] = {}

    # --- the Corpus interface of lightningllm.data.prepare ---------------------------------
    def fingerprint(self) -> dict:
        """The settings of the prepared splits, and a hash of the generator's files: a change to either changes it.

        ``num_heldout`` and ``num_long`` are left out: those splits are never prepared.
        """
        here = Path(__file__).parent
        code = hashlib.blake2b(digest_size=8)
        for file in ("corpus.py", "wording.py", "lexicon.py"):
            code.update((here / file).read_bytes())
        return {
            "answer_loss_only": self.answer_loss_only,
            "seed": self.seed,
            "working": self.working,
            "restate": self.restate,
            "sizes": [self.sizes[split] for split in SPLITS],
            "step_mix": list(self.step_mix),
            "curriculum": self.curriculum,
            "stages": list(self.stages),
            "distractors": self.distractors,
            "made_up_names": self.made_up_names,
            "made_up_verbs": self.made_up_verbs,
            "made_up_objects": self.made_up_objects,
            "generator": code.hexdigest(),
        }

    def size_bytes(self) -> int:
        """0: generated, and small, so the tokenizer trains on all of it."""
        return 0

    def documents(self, report: CleaningReport) -> Iterator[tuple[str, list[Segment], bool]]:
        """Every train, val and test problem as one record ending with EOS, in generation order.

        The layout is ``records``: each problem is one sample of its own, never cut across two nor
        sharing one with the end of another, so an answer is always predicted with its question in view.
        """
        report.layout = "records"
        for split in SPLITS:
            for problem in self.problems(split):
                prompt, completion = problem.prompt, problem.completion  # properties build the text
                report.documents_read += 1
                report.documents_kept += 1
                report.bytes_kept += len(prompt) + len(completion)
                if self.answer_loss_only:
                    yield split, [(prompt, False), (completion, True)], True
                else:
                    yield split, [(prompt + completion, True)], True
        report.bytes_read = report.bytes_kept

    def problems(self, split: str) -> list[Problem]:
        """The problems of ``split`` (``train`` in curriculum order when the curriculum is on)."""
        if split not in SPLITS + EVAL_SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS + EVAL_SPLITS}")
        if split not in self._cache:
            # A string seed is hashed with sha512 by random.Random, so it is stable across runs.
            rng = random.Random(f"{self.seed}/{split}")
            counts = self._step_counts(split, rng)
            self._cache[split] = [self._draw(split, k, rng) for k in counts]
        return list(self._cache[split])

    def _step_counts(self, split: str, rng: random.Random) -> list[int]:
        n = self.sizes[split]
        if split == "long":
            return [LONG_STEPS[i % len(LONG_STEPS)] for i in range(n)]
        if split == "heldout":
            return [i % MAX_STEPS + 1 for i in range(n)]
        allowed = [k for k in range(1, MAX_STEPS + 1) if self.step_mix[k - 1] > 0]
        if split != "train":
            return [allowed[i % len(allowed)] for i in range(n)]
        counts = []
        for i in range(n):
            top = MAX_STEPS
            if self.curriculum == "staged":  # the number of stage boundaries passed, plus one
                top = 1 + sum(i >= fraction * n for fraction in self.stages)
            ks = [k for k in allowed if k <= top] or allowed[:1]
            counts.append(rng.choices(ks, weights=[self.step_mix[k - 1] for k in ks])[0])
        return counts

    def _draw(self, split: str, num_steps: int, rng: random.Random) -> Problem:
        bucket = "test" if split in EVAL_SPLITS else split  # no train number sequence in any evaluation split
        while True:  # rejection sampling keeps the split a property of the numbers alone
            start = rng.randint(0, MAX_OPERAND)
            value, steps = start, []
            for _ in range(num_steps):
                op = rng.choice("+-") if value > 0 else "+"
                n = rng.randint(0, min(MAX_OPERAND, value if op == "-" else MAX_VALUE - value))
                value = value + n if op == "+" else value - n
                steps.append((op, n))
            if split_of(start, steps) == bucket:
                if split == "heldout":
                    return make_problem(
                        start, tuple(steps), rng, self.working, HELD_OUT, self.distractors, restate=self.restate
                    )
                return make_problem(
                    start, tuple(steps), rng, self.working, SEEN, self.distractors, self.made_up_names,
                    self.made_up_verbs, self.made_up_objects, self.restate,
                )  # fmt: skip


def make_problem(
    start: int,
    steps: tuple[tuple[str, int], ...],
    rng: random.Random,
    working: str,
    vocab: Vocabulary = SEEN,
    distractors: float = 0.0,
    made_up_names: float = 0.0,
    made_up_verbs: float = 0.0,
    made_up_objects: float = 0.0,
    restate: str = "cue",
) -> Problem:
    """Word a number sequence with ``vocab`` (the seen or the held-out wording), distractors and made-up names,
    verbs and objects at those rates; the working restates each step's cue or clause (``restate``)."""
    w = write_question(rng, vocab, start, steps, distractors, made_up_names, made_up_verbs, made_up_objects)
    restated = w.clauses if restate == "clause" else w.cues
    return Problem(w.name, w.pronoun, w.obj, start, steps, w.question, restated, working, w.distractors)


def export_jsonl(problems: Iterable[Problem], path: str | Path) -> None:
    """Write one ``{"prompt", "answer", "steps"}`` JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps({"prompt": p.prompt, "answer": p.answer, "steps": p.num_steps}) + "\n")


def parse_answer(text: str) -> int | None:
    """The integer of the last ``Answer: N`` in ``text``; None when it is missing or malformed."""
    marks = [m.start() for m in re.finditer("Answer:", text)]
    if not marks:
        return None
    match = _ANSWER.match(text, marks[-1])  # only the last one counts, even if malformed
    return int(match.group(1)) if match else None
