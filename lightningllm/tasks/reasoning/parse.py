"""Reading the reasoning corpus back: a question into its numbers, a worked answer into what it restated.

``parse_question`` turns a question worded by ``wording.py`` back into ``(name, start, steps)``,
matching each sentence against the generator's own structures (held-out ones included) and
skipping distractors; a sentence it cannot read is an error. Tests use it to prove that every
question states exactly its problem's numbers, and nothing else that counts. ``parse_working``
reads a completion's restatement (the name, the start, and each step's operation and operand as
the working uses them), so a wrong answer can be traced to a misreading (the restatement differs
from the question) or a miscomputation (it matches, the answer does not). ``parse_answer`` (the
final ``Answer: N``) lives in ``corpus.py`` beside the corpus it checks.
"""

from __future__ import annotations

import re
from functools import cache

from lightningllm.tasks.reasoning.lexicon import (
    GAIN_EVENTS,
    GAIN_VERBS,
    LOSS_EVENTS,
    LOSS_VERBS,
    NAME_ONSETS,
    NAME_VOWELS,
    OBJECTS,
    RELATIVES,
    STEM_CODAS,
)
from lightningllm.tasks.reasoning.wording import CONNECTIVES, DISTRACTORS, OPENINGS, QUESTIONS, STEPS

Steps = tuple[tuple[str, int], ...]


def _alternatives(words) -> str:
    # Longest first, so "throws away" is tried before a shorter entry it starts with.
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")"


def _made_up_word(ending: str) -> str:
    """A made-up verb's or object's form (``wording.made_up_verb``, ``made_up_object``): one or two syllables,
    a final consonant, then ``ending``."""
    return f"(?:{_alternatives(NAME_ONSETS)}{_alternatives(NAME_VOWELS)}){{1,2}}{_alternatives(STEM_CODAS)}{ending}"


@cache
def _slots(op: str) -> dict[str, str]:
    verbs = GAIN_VERBS if op == "+" else LOSS_VERBS
    events = GAIN_EVENTS if op == "+" else LOSS_EVENTS
    things = f"(?:{_alternatives(form for pair in OBJECTS for form in pair)}|{_made_up_word('s?')})"
    relative = _alternatives(RELATIVES)
    return {
        "name": r"(?P<name>[A-Z][A-Za-z]+)",
        "s": r"(?P<s>\d+)",
        "n": r"(?P<n>\d+)",
        "d": r"\d+",
        "p": "(?:she|he)",
        "o": "(?:her|him)",
        "poss": "(?:her|his)",
        "are": "(?:is|are)",
        "things": things,
        "other": things,
        "other1": things,
        "plural": things,
        "relative": relative,
        "actor": f"(?:her|his) {relative}",
        "v": f"(?:{_alternatives(v[0] for v in verbs)}|{_made_up_word('s')})",
        "ving": f"(?:{_alternatives(v[1] for v in verbs)}|{_made_up_word('ing')})",
        "ven": f"(?:{_alternatives(v[2] for v in verbs)}|{_made_up_word('ed')})",
        "iv": _alternatives(form for pair in events for form in pair),
    }


@cache
def pattern(template: str, op: str = "+") -> re.Pattern:
    """The regular expression of a template of ``wording.py``; ``op`` picks the verb lists of ``{v}`` and ``{iv}``."""
    parts = re.split(r"\{(\w+)\}", template)  # literal, slot, literal, slot, ...
    slots = _slots(op)
    return re.compile("".join(slots[part] if i % 2 else re.escape(part) for i, part in enumerate(parts)))


def _lower_first(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def parse_question(question: str) -> tuple[str, int, Steps]:
    """``(name, start, steps)`` of a question worded by this corpus (a prompt ``Q: ...\\nA:`` works too).

    Raises:
        ValueError: a sentence matches none of the corpus's structures.
    """
    question = question.removeprefix("Q: ").removesuffix("\nA:")
    sentences = re.split(r"(?<=[.?]) (?=[A-Z0-9])", question)
    opening, *middle, last = sentences
    for template in OPENINGS:
        found = pattern(template).fullmatch(opening) or pattern(template).fullmatch(_lower_first(opening))
        if found:
            name, start = found["name"], int(found["s"])
            break
    else:
        raise ValueError(f"not an opening sentence of the reasoning corpus: {opening!r}")
    asked = (pattern(t).fullmatch(_lower_first(last)) for t in QUESTIONS)
    if not any(found and found.groupdict().get("name", name) == name for found in asked):
        raise ValueError(f"not a question sentence of the reasoning corpus about {name}: {last!r}")
    steps: list[tuple[str, int]] = []
    for sentence in middle:
        text = _lower_first(sentence)
        for connective in CONNECTIVES:
            text = text.removeprefix(connective)
        if any(pattern(t).fullmatch(text) for t in DISTRACTORS):
            continue
        steps.extend(_parse_steps(text, sentence))
    return name, start, tuple(steps)


def _parse_steps(text: str, sentence: str) -> list[tuple[str, int]]:
    """The one or two steps of a step sentence (a gerund clause carries one and opens the sentence of the next)."""
    for op, structures in STEPS.items():
        for structure in structures:
            if structure.joins and (found := pattern(structure.template, op).match(text)):
                return [(op, int(found["n"])), *_parse_steps(text[found.end() :], sentence)]
    for op, structures in STEPS.items():
        for structure in structures:
            if not structure.joins and (found := pattern(structure.template, op).fullmatch(text)):
                return [(op, int(found["n"]))]
    raise ValueError(f"not a sentence of the reasoning corpus: {sentence!r}")


_START = re.compile(r" ?(\S+) starts with (\d+)\.")
_STEP = re.compile(r" Step (\d+): [^:]*:.*? \d+ ([+-]) (\d+) = -?\d+\.")


def parse_working(completion: str) -> tuple[str, int, Steps] | None:
    """``(name, start, steps)`` as a completion restates them; None when the working is malformed.

    Each step's operation and operand are the ones its equation ``a op b = c`` works with, right
    or wrong; the steps must be numbered 1, 2, ... in order.
    """
    opened = _START.match(completion)
    if not opened:
        return None
    name, start = opened[1], int(opened[2])
    steps = []
    for i, found in enumerate(_STEP.finditer(completion, opened.end())):
        if int(found[1]) != i + 1:
            return None
        steps.append((found[2], int(found[3])))
    return name, start, tuple(steps)
