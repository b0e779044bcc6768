"""One line for a config error: the file, the key and what was expected, instead of jsonargparse's usage wall.

jsonargparse reports a bad value in a nested class (``--data.batch_size x``) as a tree of union
alternatives, 10–70 lines under the whole usage, and a YAML syntax error as ``<unicode string>``.
``check_config_files`` reads each ``--config`` file first (missing, unreadable, invalid YAML: the
file, line and column); ``config_error_line`` turns a parser error into
``data.batch_size: expected int, got 'x' (in configs/debug.yaml)``. This module imports no Lightning.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

_KEY = re.compile(r'^\s*(?:- )?Parser key "([^"]+)":\s*(.*)$')
_UNKNOWN = re.compile(r"does not accept option '([^']+)'")
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
    "Problem with given class_path",
)
_EXPECTED = re.compile(r"^Expected a (?:<class '([\w.]+)'>|(.+?))\. Got value: (.*)$")
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)'")
_NOT_A_PATH = re.compile(r"^Expected a path but .* either not accessible or invalid$")


def config_files(argv: list[str]) -> list[str]:
    """The files given with ``--config F`` / ``--config=F`` / ``-c F`` (YAML text given inline is skipped)."""
    files = []
    for i, arg in enumerate(argv):
        value = None
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value is not None and "\n" not in value and not value.lstrip().startswith("{"):
            files.append(value)
    return files


def check_config_files(argv: list[str]) -> None:
    """A one-line ``ValueError`` for a ``--config`` file that is missing, unreadable or not valid YAML."""
    for name in config_files(argv):
        path = Path(name)
        if not path.exists():
            raise ValueError(f"config file {name} does not exist")
        if not path.is_file():
            raise ValueError(f"--config {name} is not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read config file {name}: {getattr(err, 'strerror', None) or err}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
            if context and start:
                problem += f" ({context} from line {start.line + 1}, column {start.column + 1})"
            raise ValueError(f"config file {name}: invalid YAML{where}: {problem}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {name} must hold a mapping of options (model:, trainer:, data:, ...)")


def _leaf(text: str) -> str:
    match = _EXPECTED.match(text)
    if match is None:
        return text[:1].lower() + text[1:]
    expected = match.group(1) or match.group(2)
    literal = re.match(r"typing\.Literal\[(.*)\]$", expected)
    expected = f"one of {literal.group(1)}" if literal else expected
    return f"expected {expected}, got {match.group(3)!r}"


def _in_file(key: str, files: list[str], argv: list[str]) -> str:
    """`` (in FILE)`` for the last config file that sets ``key`` (``data.x`` may sit under ``data.init_args``),
    unless the command line sets it (then the option's name says where)."""
    parts = key.split(".")
    candidates = [parts, [parts[0], "init_args", *parts[1:]]]
    options = {"--" + ".".join(candidate) for candidate in candidates}
    if any(arg.split("=", 1)[0] in options or arg.split("=", 1)[0].rstrip("+") in options for arg in argv):
        return ""
    for name in reversed(files):
        try:
            node_root = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for candidate in candidates:
            node = node_root
            for part in candidate:
                node = node.get(part) if isinstance(node, dict) else None
                if node is None:
                    break
            else:
                return f" (in {name})"
    return ""


def config_error_line(message: str, argv: list[str]) -> str:
    """The one line for a jsonargparse error ``message`` about the command line ``argv``."""
    files = config_files(argv)
    unknown = _UNKNOWN.search(message)
    if unknown:
        key = unknown.group(1)
        return f"unknown option {key}{_in_file(key, files, argv)}: see `lightningllm {argv[0]} --help` for the options"
    keys, leaf, class_path = [], None, None
    for line in message.splitlines():
        match = _KEY.match(line)
        if match:
            keys.append(match.group(1))
            text = match.group(2).strip()
        else:
            text = line.strip().removeprefix("- ").strip()
        named = _CLASS_PATH.match(text)
        if named and class_path is None:
            class_path = named.group(1)
        if not text or any(text.startswith(noise) for noise in _NOISE) or _NOT_A_PATH.match(text):
            continue
        leaf = text
        break
    if not keys:
        return message.strip().splitlines()[0] if message.strip() else "invalid command line"
    key = ".".join(keys)
    text = _leaf(leaf) if leaf else "invalid value"
    if class_path and (text.startswith("no module named") or "has no attribute" in text):
        text = f"cannot import {class_path} ({text})"
    return f"{key}: {text}{_in_file(key, files, argv)}"
