"""YAML parser and pydantic errors in plain words: what is wrong on the line, and the fix."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

NUMBER = "a number like 12000 or 0.36 (no units, currency signs or thousands separators)"
DATE = "a date as YYYY-MM-DD, e.g. 2026-10-01"
FILTER_VALUE = "a value (DACH), a list of values ([DACH, UK]) or {not: value-or-list}"
# What each field takes, in the words of the docs; union errors are explained with these.
FIELD_FORMS = {
    "target": "a number like 12000 or 0.36, or a change from the baseline like +20%",
    "baseline": "a number, or previous_cycle (the metric over the previous cycle)",
    "start": NUMBER,
    "min": NUMBER,
    "max": NUMBER,
    "date": DATE,
    "end": DATE,
    "key": "a short name of letters, digits, '-', '_' and '.' that starts with a letter or "
    "digit (e.g. win-rate-dach)",
    "name": "a lowercase name of letters, digits and '_' that starts with a letter "
    "(e.g. won_revenue_dach)",
    "aligns_to": "the key of another objective in this cycle",
}
PARENT_FORMS = {"where": FILTER_VALUE, "filter": FILTER_VALUE}
TOO_SHORT = {
    "key_results": "an objective needs key results: add 2 to 4 under `key_results:`",
    "metrics": "`metrics` is empty: list the metrics the expression uses",
}
_DUPLICATE = re.compile(r'found duplicate key "(.*)" with value "(.*)" \(original value: "(.*)"\)')
_YAML_HINTS = (
    ("'\\t'", "a tab character: YAML indents with spaces only; replace the tab with spaces"),
    (
        "expected <block end>",
        "this line is indented differently from the lines of its block: "
        "indent every key of a block by the same number of spaces",
    ),
    (
        "did not find expected key",
        "this line is indented differently from the lines of its "
        "block: indent every key of a block by the same number of spaces",
    ),
    (
        "did not find expected '-'",
        "a list item without its '- ': start every item of a list "
        "with '- ' at the same indentation",
    ),
    (
        "expected <block mapping start>",
        "the indentation does not line up: keys of the same block start in the same column",
    ),
    (
        "mapping values are not allowed",
        "a ':' where a value was expected: put text that contains "
        "': ' in quotes, or check this line's indentation",
    ),
    (
        "could not find expected ':'",
        "a key without its ':', or a quote that is never closed: write `key: value`",
    ),
    ("found unexpected end of stream", "a quote that is opened but never closed: close it"),
    (
        "expected ',' or ']'",
        "a [list] written on one line is not closed or misses a comma: check its brackets",
    ),
    (
        "expected ',' or '}'",
        "a {mapping} written on one line is not closed or misses a comma: check its braces",
    ),
    (
        "found undefined alias",
        "a value that starts with '*' is read as a YAML alias: put the value in quotes",
    ),
    (
        "found undefined tag handle",
        "a value that starts with '!' is read as a YAML tag: put the value in quotes",
    ),
    (
        "cannot start any token",
        "this character cannot start a value in YAML: put the value in quotes",
    ),
    (
        "unknown escape character",
        "an unknown escape (\\) in double quotes: use single quotes, or write \\\\ for a backslash",
    ),
    ("found unhashable key", "a key that is a list or a mapping: keys are plain names"),
    (
        "expected a single document",
        "a second document ('---') in one file: keep one document per file",
    ),
)


class DefinitionsConstructor(RoundTripConstructor):
    """The round-trip constructor, except that a value YAML cannot build (2026-02-30, an
    `!!int` that is not one) becomes a marked error on its line instead of a traceback."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConstructorError(None, None, _unbuildable(node, exc), node.start_mark) from None


def _unbuildable(node: Any, exc: Exception) -> str:
    value = str(getattr(node, "value", ""))
    if str(node.tag).endswith(":timestamp"):
        return (
            f"'{value}' is not a date in the calendar: {_calendar_reason(value, exc)}; write {DATE}"
        )
    kind = str(node.tag).rsplit(":", 1)[-1]
    return f"'{value}' cannot be read as {kind} ({exc}); remove the `!!{kind}` tag or fix the value"


def _calendar_reason(value: str, exc: Exception) -> str:
    match = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})", value)
    if not match:
        return str(exc)
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return f"there is no month {month}"
    days = calendar.monthrange(year, month)[1]
    return f"{calendar.month_name[month]} {year} has {days} days, not {day}"


def yaml_problem(exc: MarkedYAMLError) -> tuple[int | None, str]:
    """(line, message) of a YAML error; constructor errors are already in plain words."""
    line = exc.problem_mark.line + 1 if exc.problem_mark else None
    problem = str(exc.problem or exc.context or "cannot be read")
    if isinstance(exc, ConstructorError) and exc.problem_mark and "cannot be read as" in problem:
        return line, problem
    if isinstance(exc, ConstructorError) and "is not a date in the calendar" in problem:
        return line, problem
    if match := _DUPLICATE.search(problem):
        key, value, original = match.groups()
        return line, (
            f"invalid YAML: key '{key}' appears twice in the same block ('{original}' "
            f"and '{value}'); keep one"
        )
    for needle, hint in _YAML_HINTS:
        if needle in problem:
            return line, f"invalid YAML: {hint}"
    return line, f"invalid YAML: {problem}; check the indentation and quoting of this line"


def reader_problem(exc: ReaderError, text: str) -> tuple[int, str]:
    """A character YAML refuses (a control character pasted from elsewhere), with its line."""
    position = exc.position if isinstance(exc.position, int) else 0
    line = text[:position].count("\n") + 1
    character = (
        exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    )
    name = unicodedata.name(chr(character), "a control character")
    return line, (
        f"invalid YAML: the character U+{character:04X} ({name}) is not allowed in YAML "
        "text; delete it (it often comes with copy and paste)"
    )


# --- pydantic ------------------------------------------------------------------------------------


def data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic location that names keys and items of the YAML itself.

    Union members add their type to the location (`target.float`, `target.str`); the walk stops
    there, so every member's error lands on the same field. A discriminated union's tag (the
    metric's `type:` value) is skipped.
    """
    path: list[Any] = []
    node = data
    for part in loc:
        if _has(node, part):
            node = node[part]
            path.append(part)
        elif not (isinstance(node, dict) and node.get("type") == part):
            break
    return tuple(path)


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def describe_value(value: Any) -> str:
    """How a YAML value reads back to its author: text 'abc', the number 12, a list, ..."""
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, int) and len(str(abs(value))) > 15:
        return f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, int | float):
        return f"the number {value:g}" if isinstance(value, float) else f"the number {value}"
    if isinstance(value, dt.datetime | dt.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list | tuple | CommentedSeq):
        return "a list"
    if isinstance(value, dict | CommentedMap):
        return "a block of `name: value` lines"
    if isinstance(value, str):
        return f"'{visible(value)}'"
    return f"'{visible(str(getattr(value, 'value', value)))}'"


def visible(text: str, limit: int = 60) -> str:
    """Invisible and odd characters spelled out, so `nps\u200b` does not look like `nps`."""
    out = "".join(
        ch
        if ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zs") or ch == " "
        else f"<U+{ord(ch):04X}>"
        for ch in text
    )
    return out if len(out) <= limit else out[: limit - 1] + "…"


def field_name(path: tuple[Any, ...]) -> str:
    names = [str(p) for p in path if isinstance(p, str)]
    return names[-1] if names else "the file"


def expected_form(path: tuple[Any, ...]) -> str | None:
    names = [p for p in path if isinstance(p, str)]
    if "milestones" in names and names[-1] == "target":
        return NUMBER
    if len(names) >= 2 and names[-2] in PARENT_FORMS and path[-1] == names[-1]:
        return PARENT_FORMS[names[-2]]
    if names and names[-1] == "where":
        return None
    return FIELD_FORMS.get(names[-1]) if names else None


def pydantic_message(errors: list[dict[str, Any]], path: tuple[Any, ...]) -> str:
    """One sentence for all errors pydantic reports on one field (several for unions)."""
    field = field_name(path)
    if len(errors) > 1 or tuple(errors[0]["loc"]) != path:
        error = errors[0]
        if error["loc"][-1] == "[key]":
            return f"{describe_value(error['input'])} cannot be a name here: names are text"
        if len(errors) == 1 and error["type"] == "value_error":
            return _value_error(error)
        form = expected_form(path) or _union_form(errors)
        return f"`{field}` is {describe_value(error['input'])}; write {form}"
    return _single_message(errors[0], path, field)


def _union_form(errors: list[dict[str, Any]]) -> str:
    words = {
        "float_type": "a number",
        "float_parsing": "a number",
        "string_type": "text",
        "int_type": "a whole number",
        "bool_type": "true or false",
        "list_type": "a list",
        "dict_type": "a block of `name: value` lines",
        "literal_error": "one of the listed words",
    }
    forms = list(dict.fromkeys(words.get(e["type"], e["msg"]) for e in errors))
    return " or ".join(forms)


def _value_error(error: dict[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def _single_message(error: dict[str, Any], path: tuple[Any, ...], field: str) -> str:
    kind, shown, ctx = error["type"], describe_value(error.get("input")), error.get("ctx") or {}
    form = expected_form(path)
    if kind == "value_error":
        return _value_error(error)
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float"):
        return f"`{field}` is {shown}, not a number; write {form or NUMBER}"
    if kind == "finite_number":
        return f"`{field}` is {shown}; write a finite number"
    if kind.startswith("date") or kind.startswith("datetime"):
        return f"`{field}` is {shown}, not a date; write {DATE}"
    scalar = error.get("input")
    if kind == "string_type" and isinstance(scalar, int | float | bool | dt.date):
        quoted = str(scalar).lower() if isinstance(scalar, bool) else str(scalar)
        return (
            f"`{field}` is {shown}, which YAML reads as a number, date or yes/no rather than "
            f"text; put it in quotes: '{quoted}'"
        )
    if kind == "string_type" and form:
        return f"`{field}` is {shown}; write {form}"
    if kind == "string_type":
        return (
            f"`{field}` is {shown}, not text; write text (in quotes when it looks like a "
            "number, a date or yes/no, e.g. '2026')"
        )
    if kind == "string_pattern_mismatch":
        return f"`{field}` {shown} is not a valid {field}: write {form or 'plain text'}"
    if kind == "string_too_long":
        return f"`{field}` is longer than {ctx.get('max_length')} characters; shorten it"
    if kind in ("literal_error", "enum"):
        return f"`{field}` is {shown}; write one of {ctx.get('expected', 'the documented words')}"
    if kind == "list_type":
        return f"`{field}` is {shown}; write a list: one `- item` per line, or [a, b] on one line"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return f"`{field}` is {shown}; write a block of `name: value` lines under it"
    if kind == "too_short":
        return TOO_SHORT.get(field, f"`{field}` is empty; it needs at least one entry")
    if kind in ("bool_type", "bool_parsing"):
        return f"`{field}` is {shown}; write true or false"
    return f"`{field}`: {error['msg']}"


def context_of(data: Any, path: tuple[Any, ...]) -> str:
    """The thing a field belongs to, as its author calls it: key result 'nps', cycle, ..."""
    names = {
        "objectives": "objective",
        "key_results": "key result",
        "kpis": "KPI",
        "metrics": "metric",
        "milestones": "milestone",
    }
    context, node = "", data
    for i, part in enumerate(path[:-1]):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if part == "cycle" and i == 0:
            context = "cycle"
        elif isinstance(part, int) and i > 0 and path[i - 1] in names:
            label = node.get("key", node.get("name")) if isinstance(node, dict) else None
            noun = names[path[i - 1]]
            here = (
                f"{noun} '{visible(str(label))}'"
                if isinstance(label, str | int)
                else f"{noun} #{part + 1}"
            )
            context = f"{context}, {here}" if noun == "milestone" and context else here
    return context


def group_errors(
    errors: list[dict[str, Any]], data: Any
) -> list[tuple[tuple[Any, ...], list[dict[str, Any]]]]:
    """pydantic errors grouped by the YAML field they are about, in the order reported."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        groups.setdefault(data_path(data, tuple(error["loc"])), []).append(error)
    return list(groups.items())
