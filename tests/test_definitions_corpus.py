"""A corpus of broken or method-violating definition files: each gives its message, file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kr_metrics.definitions import DefinitionError
from kr_metrics.loader import load_definitions

CORPUS = sorted((Path(__file__).parent / "definitions_corpus").glob("*.yaml"))
HEADER_LINES = 3  # `# expect:`, `# line:`, `# severity:`; lines in the header count the body


def expectation(path: Path) -> tuple[str, int | None, str]:
    text = path.read_text()
    expect = re.search(r"^# expect: (.+)$", text, re.M).group(1)
    line = re.search(r"^# line: (\S+)$", text, re.M).group(1)
    severity = re.search(r"^# severity: (\S+)$", text, re.M).group(1)
    return expect, None if line == "-" else int(line) + HEADER_LINES, severity


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_broken_file_names_its_problem_file_and_line(path):
    expect, line, severity = expectation(path)
    try:
        problems = load_definitions(path).warnings
    except DefinitionError as exc:  # any other exception fails the test: no tracebacks for users
        problems = exc.problems
    matching = [p for p in problems if expect in p.message]
    assert matching, f"no problem mentions {expect!r}; got: {[str(p) for p in problems]}"
    problem = matching[0]
    assert problem.severity == severity
    assert problem.file == str(path)
    assert problem.line == line, str(problem)
    assert str(problem).startswith(
        f"{path}:{line}: {severity}:" if line else f"{path}: {severity}:"
    )
