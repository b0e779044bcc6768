"""The built-in reasoning corpus: seeded, step-by-step arithmetic word problems (standard library only).

Each problem is a person with some countable objects who gains or loses some of them in 1 to 3
steps; the answer restates the start, works every step as an ``a op b = c`` equation and ends
with ``Answer: N``. All numbers are whole: start values and operands lie in 0..99 and every
intermediate result in 0..999 (subtractions never go below zero). How a step is worked is a
choice (``working``): ``plain`` writes only the equation; ``reversed`` writes the zero-padded
operands and the result least-significant digit first; ``digits`` (the default) works column by
column, units first, restating each column's two digits and incoming carry before its result
digit and outgoing carry (``7+5+0=2c1``). Restating the digits splits every column into a copy
and a one-digit sum, which a small char-level GPT learns several times faster than the bare
result (benchmarks/reasoning_recipe.py compares the styles). The train/val/test split of a
problem is a hash of its numbers and operations, so no test number sequence is ever seen in
training, whatever the name, object or phrasing around it. ``ReasoningCorpus`` is a ``Corpus``
(``lightningllm.data.prepare``): one document per problem, the question read as context and
only the completion trained on (``answer_loss_only``), in generation order.
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

if TYPE_CHECKING:
    from lightningllm.data.instruct import Segment
    from lightningllm.data.sources import CleaningReport

Working = Literal["plain", "reversed", "digits"]
Curriculum = Literal["none", "staged"]
Split = Literal["train", "val", "test"]
WORKING_STYLES: tuple[str, ...] = ("plain", "reversed", "digits")
SPLITS: tuple[str, ...] = ("train", "val", "test")
MAX_OPERAND = 99
MAX_VALUE = 999
DIGITS = 3  # enough columns for any intermediate result (at most 99 + 3 * 99 = 396)

# (name, pronoun): the pronoun opens the sentences that follow the first one.
NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "She"), ("Liam", "He"), ("Emma", "She"), ("Noah", "He"), ("Olivia", "She"), ("Ethan", "He"),
    ("Ava", "She"), ("Lucas", "He"), ("Sophia", "She"), ("Mason", "He"), ("Isabella", "She"), ("Logan", "He"),
    ("Amelia", "She"), ("James", "He"), ("Harper", "She"), ("Oliver", "He"), ("Ella", "She"), ("Jacob", "He"),
    ("Chloe", "She"), ("Daniel", "He"), ("Grace", "She"), ("Samuel", "He"), ("Lily", "She"), ("Henry", "He"),
    ("Zoe", "She"), ("Omar", "He"), ("Nora", "She"), ("Ravi", "He"), ("Hana", "She"), ("Diego", "He"),
    ("Priya", "She"), ("Kenji", "He"), ("Alice", "She"), ("Felix", "He"),
)  # fmt: skip

# (singular, plural) of things that can be counted, bought, found and given away.
OBJECTS: tuple[tuple[str, str], ...] = (
    ("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("coin", "coins"),
    ("book", "books"), ("pencil", "pencils"), ("cookie", "cookies"), ("balloon", "balloons"),
    ("shell", "shells"), ("stamp", "stamps"), ("card", "cards"), ("crayon", "crayons"),
    ("toy car", "toy cars"), ("button", "buttons"), ("bead", "beads"), ("block", "blocks"),
    ("candle", "candles"), ("cupcake", "cupcakes"), ("eraser", "erasers"), ("feather", "feathers"),
    ("flower", "flowers"), ("key", "keys"), ("orange", "oranges"), ("pebble", "pebbles"),
    ("ribbon", "ribbons"), ("ticket", "tickets"), ("box", "boxes"), ("cherry", "cherries"),
    ("mango", "mangoes"), ("puzzle", "puzzles"), ("bottle", "bottles"), ("peach", "peaches"),
)  # fmt: skip

# Phrasings per operation, after the pronoun; {n} is the operand.
PHRASES: dict[str, tuple[str, ...]] = {
    "+": (
        "buys {n} more", "finds {n} more", "is given {n} more", "gets {n} more", "receives {n} more",
        "picks up {n} more", "wins {n} more", "collects {n} more", "adds {n} more", "borrows {n} more",
    ),
    "-": (
        "gives away {n}", "loses {n}", "sells {n}", "donates {n}", "gives {n} to a friend",
        "throws away {n}", "lends out {n}", "trades away {n}", "drops {n}", "uses up {n}",
    ),
}  # fmt: skip

# Ways to chain the step clauses of a 2- or 3-step question.
_CHAINS: dict[int, tuple[str, ...]] = {
    1: ("{p} {0}.",),
    2: ("{p} {0} and then {1}.", "{p} {0}. Then {q} {1}.", "First {q} {0}. After that {q} {1}."),
    3: (
        "{p} {0}, then {1}, and then {2}.",
        "{p} {0}. Then {q} {1}. Finally {q} {2}.",
        "First {q} {0}. Next {q} {1}. Then {q} {2}.",
    ),
}
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
    working: str = "digits"

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
        """The text after ``A:``: the start, one worked equation per step, then ``Answer: N``."""
        parts = [f" {self.name} starts with {self.start}."]
        values = self.values
        for (op, n), a, c in zip(self.steps, values[:-1], values[1:], strict=True):
            parts.append(work_step(a, op, n, c, self.working))
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

    blake2b rather than ``hash()``, which Python salts per process. 90% train, 5% val, 5% test.
    """
    key = str(start) + "".join(f"{op}{n}" for op, n in steps)
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 100
    return "train" if bucket < 90 else "val" if bucket < 95 else "test"


class ReasoningCorpus:
    """Seeded train/val/test lists of word problems with a chosen working style and step mix.

    Args:
        seed: every list is a pure function of the seed and the other arguments.
        working: how steps are worked (``plain``, ``reversed`` or ``digits``).
        num_train, num_val, num_test: problems per split.
        step_mix: relative weights of 1-, 2- and 3-step problems (val and test cycle through
            the step counts with positive weight, so they stay balanced).
        curriculum: ``"staged"`` orders training problems for an in-order stream: the first
            ``stages[0]`` of it holds only 1-step problems, up to ``stages[1]`` at most 2 steps,
            then the full mix. ``"none"`` mixes step counts throughout.
        stages: the stream fractions where 2- and then 3-step problems are let in.
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
        num_train: int = 60_000,
        num_val: int = 300,
        num_test: int = 300,
        step_mix: Sequence[float] = (1.0, 1.0, 1.0),
        curriculum: Curriculum = "staged",
        stages: tuple[float, float] = (0.2, 0.4),
        answer_loss_only: bool = True,
    ):
        if working not in WORKING_STYLES:
            raise ValueError(f"ReasoningCorpus: working must be one of {WORKING_STYLES}, got {working!r}")
        if len(step_mix) != 3 or min(step_mix) < 0 or sum(step_mix) <= 0:
            raise ValueError(f"ReasoningCorpus: step_mix needs 3 non-negative weights, got {step_mix!r}")
        if curriculum not in ("none", "staged"):
            raise ValueError(f"ReasoningCorpus: curriculum must be 'none' or 'staged', got {curriculum!r}")
        self.seed, self.working, self.step_mix = seed, working, tuple(step_mix)
        self.curriculum, self.stages, self.answer_loss_only = curriculum, stages, answer_loss_only
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self._cache: dict[str, list[Problem]] = {}

    # --- the Corpus interface of lightningllm.data.prepare ---------------------------------
    def fingerprint(self) -> dict:
        """The settings, and a hash of this file: any change to the generator changes the corpus."""
        code = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
        return {
            "answer_loss_only": self.answer_loss_only,
            "seed": self.seed,
            "working": self.working,
            "sizes": [self.sizes[split] for split in SPLITS],
            "step_mix": list(self.step_mix),
            "curriculum": self.curriculum,
            "stages": list(self.stages),
            "generator": code,
        }

    def size_bytes(self) -> int:
        """0: generated, and small, so the tokenizer trains on all of it."""
        return 0

    def documents(self, report: CleaningReport) -> Iterator[tuple[str, list[Segment], bool]]:
        """Every problem of every split as one document ending with EOS, in generation order."""
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
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if split not in self._cache:
            # A string seed is hashed with sha512 by random.Random, so it is stable across runs.
            rng = random.Random(f"{self.seed}/{split}")
            counts = self._step_counts(split, rng)
            self._cache[split] = [self._draw(split, k, rng) for k in counts]
        return list(self._cache[split])

    def _step_counts(self, split: str, rng: random.Random) -> list[int]:
        n = self.sizes[split]
        allowed = [k for k in (1, 2, 3) if self.step_mix[k - 1] > 0]
        if split != "train":
            return [allowed[i % len(allowed)] for i in range(n)]
        counts = []
        for i in range(n):
            top = 3
            if self.curriculum == "staged":
                top = 1 if i < self.stages[0] * n else 2 if i < self.stages[1] * n else 3
            ks = [k for k in allowed if k <= top] or allowed[:1]
            counts.append(rng.choices(ks, weights=[self.step_mix[k - 1] for k in ks])[0])
        return counts

    def _draw(self, split: str, num_steps: int, rng: random.Random) -> Problem:
        while True:  # rejection sampling keeps the split a property of the numbers alone
            start = rng.randint(0, MAX_OPERAND)
            value, steps = start, []
            for _ in range(num_steps):
                op = rng.choice("+-") if value > 0 else "+"
                n = rng.randint(0, min(MAX_OPERAND, value if op == "-" else MAX_VALUE - value))
                value = value + n if op == "+" else value - n
                steps.append((op, n))
            if split_of(start, steps) == split:
                return make_problem(start, tuple(steps), rng, self.working)


def make_problem(start: int, steps: tuple[tuple[str, int], ...], rng: random.Random, working: str) -> Problem:
    """Wrap a number sequence in a randomly drawn name, object and phrasing."""
    name, pronoun = rng.choice(NAMES)
    singular, plural = rng.choice(OBJECTS)
    clauses = [rng.choice(PHRASES[op]).format(n=n) for op, n in steps]
    chain = rng.choice(_CHAINS[len(steps)]).format(*clauses, p=pronoun, q=pronoun.lower())
    things = singular if start == 1 else plural
    question = f"{name} has {start} {things}. {chain} How many {plural} does {name} have now?"
    return Problem(name, pronoun, plural, start, steps, question, working)


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
