"""The README's code must run as printed."""

import re

from tests.conftest import REPO


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_shows_the_two_commands_first():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen
