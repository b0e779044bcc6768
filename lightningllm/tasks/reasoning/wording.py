"""How a reasoning question is worded: its sentence structures, the share of them held out, and the writer.

A question is an opening sentence (``Mia has 17 apples.``), one clause per step, optional
distractor sentences, and a question (``How many apples does Mia have now?``). Every list it draws
from has several entries, so a model has to read the question rather than recall its template:
10 opening structures, 9 or 10 step structures per operation (a subject doing the step, another
actor doing it for her, a passive, an event with no doer, a gerund clause that carries one step and
opens the next sentence: ``After buying 7 more, she sells 3 of them.``), 11 question sentences,
and the names, objects and verbs of ``lexicon.py``.

The operation can be read from the structure even when the verb is new. Every ``+`` structure
carries ``more``, ``another`` or ``extra`` (with ``gives her`` and ``added to her collection`` as
its actor forms); every ``-`` structure carries ``of them``, ``of her <objects>``, ``away`` or
``fewer``. No distractor, opening or question uses any of these cue words. The verbs agree with
their cue too (``buys 12 more``, ``sells 12 of them``), but a model that meets ``inherits 12 more``
or ``pawns 12 of them`` for the first time can still tell the operation from the cue alone. The
worked answer restates the cue it read (``Step 1: 12 more: 017+012: ...``), so the model copies
the phrase that decides the operation before it computes.

Held out: a fixed share of every list (``HELDOUT_SHARE``, at least 2 entries) is never used in
train, val or test, chosen by a hash of the entry, so the choice does not depend on the seed. The
``heldout`` split is worded with held-out names, objects, openings and questions only, and every
step with a held-out verb or a held-out structure, so each of its sentences holds something the
model has not seen.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from lightningllm.tasks.reasoning.lexicon import (
    GAIN_EVENTS,
    GAIN_VERBS,
    LOSS_EVENTS,
    LOSS_VERBS,
    NAME_CODAS,
    NAME_ONSETS,
    NAME_VOWELS,
    NAMES,
    OBJECTS,
    RELATIVES,
    STEM_CODAS,
)

HELDOUT_SHARE = 0.17
"""The share of every list held out of train/val/test (at least 2 entries of each)."""


@dataclass(frozen=True)
class Structure:
    """One way to word a step: a template, the words of it the answer restates, and where its verb comes from.

    Slots: ``{p}`` she/he, ``{o}`` her/him, ``{poss}`` her/his, ``{n}`` the operand, ``{things}``
    the object agreeing with ``{n}``, ``{are}`` is/are agreeing with ``{n}``, ``{actor}`` her
    friend/cousin/..., ``{v}``/``{ving}``/``{ven}`` a verb's three forms, ``{iv}`` an event verb
    agreeing with ``{n}``. Templates start lower case; the writer capitalises the sentence.
    """

    key: str
    template: str
    cue: str
    """The words of the sentence that carry the number and the operation, restated in the answer."""
    verbs: Literal["verbs", "events"] | None = None
    """Which verb list fills it: a transitive verb, an event verb, or none (its words are fixed)."""
    joins: bool = False
    """A gerund clause: it carries one step and opens the sentence of the next."""


STEPS: dict[str, tuple[Structure, ...]] = {
    "+": (
        Structure("more", "{p} {v} {n} more.", "{n} more", "verbs"),
        Structure("another", "{p} {v} another {n}.", "another {n}", "verbs"),
        Structure("extra", "{p} {v} {n} extra {things}.", "{n} extra", "verbs"),
        Structure("actor-more", "{actor} {v} {n} more for {o}.", "{n} more for {o}", "verbs"),
        Structure("passive-more", "{n} more {are} {ven} for {o}.", "{n} more", "verbs"),
        Structure("gives-her", "{actor} gives {o} {n} more.", "gives {o} {n}"),
        Structure("collection", "{n} more {things} {are} added to {poss} collection.", "{n} more"),
        Structure("event-more", "{n} more {iv}.", "{n} more", "events"),
        Structure("after-more", "after {ving} {n} more, ", "{n} more", "verbs", joins=True),
        Structure("gift", "{p} gets another {n} as a gift.", "another {n}"),
    ),
    "-": (
        Structure("of-them", "{p} {v} {n} of them.", "{n} of them", "verbs"),
        Structure("of-hers", "{p} {v} {n} of {poss} {things}.", "{n} of {poss}", "verbs"),
        Structure("passive-of-them", "{n} of them {are} {ven}.", "{n} of them", "verbs"),
        Structure("actor-of-hers", "{actor} {v} {n} of {poss} {things}.", "{n} of {poss}", "verbs"),
        Structure("away", "{p} gives {n} of them away.", "{n} of them away"),
        Structure("away-to", "{p} gives {n} away to {actor}.", "{n} away"),
        Structure("event-of-them", "{n} of them {iv}.", "{n} of them", "events"),
        Structure("after-of-them", "after {ving} {n} of them, ", "{n} of them", "verbs", joins=True),
        Structure("fewer", "{p} now has {n} fewer.", "{n} fewer"),
    ),
}  # fmt: skip

# The first sentence; {s} is the start and {things} agrees with it.
OPENINGS: tuple[str, ...] = (
    "{name} has {s} {things}.", "{name} owns {s} {things}.", "{name} starts with {s} {things}.",
    "there {are} {s} {things} in {name}'s box.", "{name} keeps {s} {things} in a basket.",
    "at first, {name} holds {s} {things}.", "{name} has a bag with {s} {things} in it.",
    "{name}'s shelf holds {s} {things}.", "in the morning, {name} counts {s} {things}.",
    "{name} brings {s} {things} to school.", "{name} counts {s} {things} on the floor.",
    "{name} has exactly {s} {things}.",
)  # fmt: skip

# The last sentence; {plural} is the object's plural.
QUESTIONS: tuple[str, ...] = (
    "how many {plural} does {name} have now?", "how many {plural} does {name} have left?",
    "how many {plural} does {name} end up with?", "how many {plural} does {name} have at the end?",
    "how many {plural} does {name} have in the end?", "how many {plural} does {name} own now?",
    "how many {plural} does {name} have after all this?", "what is the number of {plural} {name} has now?",
    "in total, how many {plural} does {name} have?", "how many {plural} are left?",
    "how many {plural} are there in the end?",
)  # fmt: skip

# Sentences with a number that does not count the subject's objects: they must be ignored. {d} is
# that number, {other} another object (plural), {other1} its singular. None uses a cue word.
DISTRACTORS: tuple[str, ...] = (
    "{poss} {relative} has {d} {other}.", "it is {d} o'clock.", "{p} is {d} years old.",
    "{poss} {relative} is {d} years old.", "a {other1} costs {d} cents.", "there are {d} {other} on the table.",
)  # fmt: skip

# Openers of a step's sentence (lower case; the sentence is capitalised after).
CONNECTIVES: tuple[str, ...] = ("then ", "next, ", "after that, ", "later, ", "a bit later, ")

_PRONOUNS = {"She": ("she", "her", "her"), "He": ("he", "him", "his")}  # subject, object, possessive

T = TypeVar("T")


def held_out_part(items: Sequence[T], label: str) -> tuple[T, ...]:
    """The held-out entries of a list: the ``HELDOUT_SHARE`` (at least 2) with the lowest hash, in list order.

    The hash is of ``label`` and the entry's text, so the choice is the same for every seed and
    does not move when entries are added elsewhere in the list.
    """

    def rank(item: T) -> bytes:
        return hashlib.blake2b(f"{label}/{item!r}".encode(), digest_size=8).digest()

    k = max(2, round(HELDOUT_SHARE * len(items)))
    chosen = set(sorted(items, key=rank)[:k])
    return tuple(item for item in items if item in chosen)


@dataclass(frozen=True)
class Vocabulary:
    """The entries a split is worded with: the seen share of every list, or the held-out one."""

    names: tuple[tuple[str, str], ...]
    objects: tuple[tuple[str, str], ...]
    verbs: dict[str, tuple[tuple[str, str, str], ...]]
    events: dict[str, tuple[tuple[str, str], ...]]
    steps: dict[str, tuple[Structure, ...]]
    openings: tuple[str, ...]
    questions: tuple[str, ...]


def _vocabularies() -> tuple[Vocabulary, Vocabulary]:
    lists = {
        "names": NAMES,
        "objects": OBJECTS,
        "verbs+": GAIN_VERBS,
        "verbs-": LOSS_VERBS,
        "events+": GAIN_EVENTS,
        "events-": LOSS_EVENTS,
        "steps+": STEPS["+"],
        "steps-": STEPS["-"],
        "openings": OPENINGS,
        "questions": QUESTIONS,
    }
    held = {label: held_out_part(items, label) for label, items in lists.items()}
    seen = {label: tuple(x for x in items if x not in held[label]) for label, items in lists.items()}
    # A held-out step is a held-out structure, or a seen one filled with a held-out verb.
    held_steps = {op: tuple(s for s in STEPS[op] if s in held[f"steps{op}"] or s.verbs) for op in "+-"}

    def vocabulary(part: dict, steps: dict) -> Vocabulary:
        return Vocabulary(
            names=part["names"],
            objects=part["objects"],
            verbs={op: part[f"verbs{op}"] for op in "+-"},
            events={op: part[f"events{op}"] for op in "+-"},
            steps=steps,
            openings=part["openings"],
            questions=part["questions"],
        )

    return vocabulary(seen, {op: seen[f"steps{op}"] for op in "+-"}), vocabulary(held, held_steps)


SEEN, HELD_OUT = _vocabularies()
"""The wording of train/val/test, and that of the ``heldout`` split."""


def _words_in_use() -> frozenset[str]:
    """Every word (lower-cased) of the lexicon and the templates: a made-up name is none of them."""
    texts = [s.template for op in STEPS for s in STEPS[op]]
    texts += [*OPENINGS, *QUESTIONS, *DISTRACTORS, *CONNECTIVES, *RELATIVES, *(n for n, _ in NAMES)]
    texts += [f for entry in GAIN_VERBS + LOSS_VERBS + GAIN_EVENTS + LOSS_EVENTS + OBJECTS for f in entry]
    texts += [w for forms in _PRONOUNS.values() for w in forms]
    return frozenset(w.lower() for t in texts for w in re.findall(r"[A-Za-z]+", t))


_WORDS_IN_USE = _words_in_use()


def made_up_name(rng: random.Random) -> str:
    """A pronounceable name of 1 to 4 syllables and a coda (``Kemavu``) that is no name of ``NAMES`` and no word
    of the text, so it is never a held-out name and a held-out entry can still be searched for."""
    while True:
        syllables = rng.choice((1, 2, 2, 2, 3, 3, 4))
        name = "".join(rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) for _ in range(syllables))
        name += rng.choice(NAME_CODAS)
        if len(name) >= 3 and name not in _WORDS_IN_USE:
            return name.capitalize()


class Wording(NamedTuple):
    """A worded question and what the worked answer needs of it."""

    question: str
    name: str
    pronoun: str
    obj: str
    """The object's plural (``apples``)."""
    cues: tuple[str, ...]
    """Per step, the words that carry its number and operation (``12 more``), as written."""
    clauses: tuple[str, ...]
    """Per step, its whole clause as the question writes it (``She buys 12 more``, ``After selling 3 of them``)."""
    distractors: tuple[int, ...]
    """The numbers of the distractor sentences, none of them a number of the problem."""


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _made_up_stem(rng: random.Random, endings: Sequence[str]) -> str:
    """One or two syllables and a final consonant, with none of ``stem + ending`` a word of the text."""
    while True:
        stem = "".join(rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) for _ in range(rng.choice((1, 1, 2))))
        stem += rng.choice(STEM_CODAS)
        if len(stem) >= 3 and not {stem + ending for ending in endings} & _WORDS_IN_USE:
            return stem


def made_up_verb(rng: random.Random) -> tuple[str, str, str]:
    """A made-up verb's three forms (``florps``, ``florping``, ``florped``), none of them a word of the text.

    It means nothing, so only the structure and its cue words tell the step's operation.
    """
    stem = _made_up_stem(rng, ("", "s", "ing", "ed"))
    return stem + "s", stem + "ing", stem + "ed"


def made_up_object(rng: random.Random) -> tuple[str, str]:
    """A made-up countable object, singular and plural (``glimp``, ``glimps``), neither a word of the text."""
    stem = _made_up_stem(rng, ("", "s"))
    return stem, stem + "s"


def write_question(
    rng: random.Random,
    vocab: Vocabulary,
    start: int,
    steps: Sequence[tuple[str, int]],
    distractors: float,
    made_up_names: float = 0.0,
    made_up_verbs: float = 0.0,
    made_up_objects: float = 0.0,
) -> Wording:
    """Word a number sequence in names, objects and structures drawn from ``vocab``.

    With probability ``distractors`` a sentence with an unrelated number is inserted between two
    sentences (and with that probability again, a second); its number is none of the problem's.
    With probability ``made_up_names`` the person has a made-up name (``made_up_name``) instead of
    one of ``vocab.names``, and with probability ``made_up_verbs`` a step's verb is made up
    (``made_up_verb``) instead of one of ``vocab.verbs``; with probability ``made_up_objects`` the
    objects are made up (``made_up_object``).
    """
    if made_up_names > 0 and rng.random() < made_up_names:  # no draw at 0: the held-out wording stays as it was
        name, pronoun = made_up_name(rng), rng.choice(("She", "He"))
    else:
        name, pronoun = rng.choice(vocab.names)
    obj = made_up_object(rng) if made_up_objects > 0 and rng.random() < made_up_objects else rng.choice(vocab.objects)
    opening = rng.choice(vocab.openings).format(name=name, s=start, things=_agree(start, obj), are=_be(start))
    sentences, cues, clauses = _step_sentences(rng, vocab, pronoun, obj, steps, made_up_verbs)
    sentences.insert(0, _capitalise(opening))
    numbers = _insert_distractors(rng, vocab, pronoun, obj, sentences, _numbers_of(start, steps), distractors)
    question = _capitalise(rng.choice(vocab.questions).format(name=name, plural=obj[1]))
    return Wording(" ".join([*sentences, question]), name, pronoun, obj[1], cues, clauses, numbers)


def _step_sentences(
    rng: random.Random,
    vocab: Vocabulary,
    pronoun: str,
    obj: tuple[str, str],
    steps: Sequence[tuple[str, int]],
    made_up_verbs: float = 0.0,
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """One sentence per step (two steps for a gerund clause and the sentence it opens), each step's cue, and
    each step's clause as the question writes it."""
    subject, objective, possessive = _PRONOUNS[pronoun]
    sentences, cues, written, gerund = [], [], [], ""
    for i, (op, n) in enumerate(steps):
        choices = vocab.steps[op]
        if gerund:  # the clause after a gerund needs the subject: "after buying 7 more, she ..."
            choices = tuple(s for s in choices if s.template.startswith("{p}") and not s.joins)
        elif i == len(steps) - 1 or not any(s.template.startswith("{p}") for s in vocab.steps[steps[i + 1][0]]):
            choices = tuple(s for s in choices if not s.joins)
        structure = rng.choice(choices)
        words = {"p": subject, "o": objective, "poss": possessive, "n": n, "things": _agree(n, obj), "are": _be(n)}
        words["actor"] = f"{possessive} {rng.choice(RELATIVES)}"
        if structure.verbs == "verbs":
            made_up = made_up_verbs > 0 and rng.random() < made_up_verbs
            words["v"], words["ving"], words["ven"] = made_up_verb(rng) if made_up else rng.choice(vocab.verbs[op])
        elif structure.verbs == "events":
            plural_verb, singular_verb = rng.choice(vocab.events[op])
            words["iv"] = singular_verb if n == 1 else plural_verb
        cues.append(structure.cue.format(**words))
        clause = structure.template.format(**words)
        if structure.joins:  # it opens its sentence: "After buying 7 more"
            gerund = clause
            written.append(_capitalise(clause).removesuffix(", "))
            continue
        sentence, after_gerund, gerund = gerund + clause, bool(gerund), ""
        connective = rng.random() < 0.5 and not sentence.startswith("after ")  # not "Then, after ..."
        if connective:
            sentence = rng.choice(CONNECTIVES) + sentence
        sentences.append(_capitalise(sentence))
        written.append((clause if after_gerund or connective else _capitalise(clause)).removesuffix("."))
    return sentences, tuple(cues), tuple(written)


def _insert_distractors(
    rng: random.Random,
    vocab: Vocabulary,
    pronoun: str,
    obj: tuple[str, str],
    sentences: list[str],
    used: set[int],
    rate: float,
) -> tuple[int, ...]:
    """Insert up to two distractor sentences after the opening; their numbers, none of them in ``used``."""
    _, _, possessive = _PRONOUNS[pronoun]
    numbers = []
    while len(numbers) < 2 and rng.random() < rate:
        template = rng.choice(DISTRACTORS)
        low, high = (2, 12) if "o'clock" in template else (6, 90) if "years" in template else (2, 99)
        free = [d for d in range(low, high + 1) if d not in used]
        if not free:  # every hour is a number of the problem: leave this one out
            break
        d = rng.choice(free)
        used.add(d)
        numbers.append(d)
        singular, plural = rng.choice([o for o in vocab.objects if o != obj])
        words = {"p": _PRONOUNS[pronoun][0], "poss": possessive, "relative": rng.choice(RELATIVES), "d": d}
        sentence = template.format(**words, other=plural, other1=singular)
        sentences.insert(rng.randint(1, len(sentences)), _capitalise(sentence))
    return tuple(numbers)


def _numbers_of(start: int, steps: Sequence[tuple[str, int]]) -> set[int]:
    """The start, every operand and every intermediate result: the numbers a distractor must not use."""
    used, value = {start}, start
    for op, n in steps:
        value = value + n if op == "+" else value - n
        used |= {n, value}
    return used


def _agree(count: int, forms: tuple[str, str]) -> str:
    """The singular of ``(singular, plural)`` for a count of 1, else the plural."""
    return forms[0] if count == 1 else forms[1]


def _be(count: int) -> str:
    return "is" if count == 1 else "are"
