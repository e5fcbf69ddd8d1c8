"""Hundreds of malformed definition files: `definitions check` answers each with file:line
problems and exit code 1 (or 0), never with a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import cli

DEMO = {path.name: path.read_text() for path in sorted((REPO / "definitions").glob("*.yaml"))}
# Values that YAML, pydantic or the lint have tripped over, or could: dates that do not exist,
# numbers too big for a float, YAML syntax in a value, invisible and control characters.
NASTY = st.sampled_from(
    [
        "2026-02-30",
        "2026-13-01",
        "2026-00-10",
        "0000-00-00",
        "9999-12-31",
        "2026-10-01T25:00:00",
        ".nan",
        ".inf",
        "-.inf",
        "1e400",
        "-1e400",
        "9" * 400,
        "0",
        "-1",
        "1e15",
        "1e16",
        "0.0",
        "+20%",
        "+0%",
        "-100%",
        "+1e9%",
        "previous_cycle",
        "[]",
        "{}",
        "[",
        "{",
        "]",
        "}",
        "'",
        '"',
        "~",
        "null",
        "yes",
        "no",
        "&a",
        "*a",
        "!!int x",
        "!!float y",
        "!!binary zz",
        "!!timestamp q",
        "!foo bar",
        "@x",
        "`x",
        "%x",
        "|",
        ">",
        "- x",
        "? x",
        ": x",
        "{not: []}",
        "{not: [DACH]}",
        "[DACH, DACH]",
        "{region: []}",
        "{a: {b: {c: [1, [2, [3]]]}}}",
        "rolling_0d",
        "rolling_9999d",
        "rolling_1d",
        "Mars/Olympus",
        "UTC",
        "America/New_York",
        "\u200b",
        "\ufeff",
        "ß",
        "𝟘",
        "\x07",
        "\t",
        "\x00",
        "\x85",
        "\u2028",
        "won_revenue / 0",
        "<<: *a",
        "{<<: {a: 1}}",
    ]
)
VALUES = st.one_of(
    NASTY,
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.dates().map(str),
    st.text(max_size=12),
)
PROBLEM_LINE = re.compile(r"^(?P<file>[^\n]+?\.yaml):(?P<line>\d+): (error|warning): \S")


def _mutate(text: str, data: st.DataObject) -> str:
    lines = text.split("\n")
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    kind = data.draw(
        st.sampled_from(
            ["value", "delete", "duplicate", "indent", "tab", "insert", "truncate", "swap"]
        ),
        label="mutation",
    )
    line = lines[i]
    if kind == "value" and ":" in line:
        key = line.split(":", 1)[0]
        lines[i] = f"{key}: {data.draw(VALUES, label='value')}"
    elif kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, line)
    elif kind == "indent":
        shift = data.draw(st.integers(-3, 3), label="shift")
        lines[i] = " " * max(0, len(line) - len(line.lstrip(" ")) + shift) + line.lstrip(" ")
    elif kind == "tab":
        lines[i] = "\t" + line.lstrip(" ")
    elif kind == "insert":
        at = data.draw(st.integers(0, len(line)), label="column")
        lines[i] = line[:at] + data.draw(VALUES, label="inserted") + line[at:]
    elif kind == "truncate":
        lines = lines[:i]
    elif kind == "swap" and i + 1 < len(lines):
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "definitions").mkdir()
    config = root / "krpulse.yaml"
    config.write_text("timezone: Europe/Berlin\ndefinitions: definitions/\n")
    return root / "definitions", config


# One mutated demo file per example, checked on its own (a folder of all four files finds the
# same problems and costs four times as much: the YAML parser is most of the time).
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_definitions_check_never_tracebacks_and_names_file_and_line(project, data):
    folder, config = project
    name = data.draw(st.sampled_from(sorted(DEMO)), label="file")
    text = DEMO[name]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        text = _mutate(text, data)
    (folder / "mutated.yaml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "definitions", "check", str(folder)])

    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n--- file:\n{text}"
    )
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    problems = [line for line in result.stderr.split("\n") if line]
    if result.exit_code == 1:
        assert problems[-1].endswith("; nothing was loaded."), result.stderr
        problems = problems[:-1]
        assert problems, "exit code 1 without a problem"
    for line in problems:
        match = PROBLEM_LINE.match(line)
        assert match, f"no file:line in {line!r}\n--- file:\n{text}"
        assert Path(match["file"]).parent == folder
