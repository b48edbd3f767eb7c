"""Read, parse and validate a policies file into :class:`Policies`, or fail with every problem.

This is the one gate for policies: ``gladd check``, ``gladd run`` and the live reload all
call :func:`load_policies` (or :func:`parse_policies` on text already read), so they accept
and reject exactly the same files with exactly the same messages.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gladd.errors import PolicyError, Problem
from gladd.policies.locate import locate, nearest
from gladd.policies.model import Policies, semantic_problems
from gladd.policies.read import read_policies_file

_TOML_POSITION = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"^(.*) \(at end of document\)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedPolicies:
    """Valid policies and where they came from."""

    policies: Policies
    source: str
    sha256: str
    data: bytes  # the file as read, kept as the last good copy once accepted


def load_policies(path: Path) -> LoadedPolicies:
    """Read (bounded: see :mod:`.read`) and validate ``path``; raise :class:`PolicyError`
    listing every problem."""
    try:
        data = read_policies_file(path)
    except FileNotFoundError:
        raise PolicyError(
            str(path), [_problem("file not found; create it or pass another path")]
        ) from None
    except PermissionError:
        raise PolicyError(
            str(path), [_problem("cannot be read: permission denied (check owner and mode)")]
        ) from None
    except OSError as exc:
        raise PolicyError(str(path), [_problem(f"cannot be read: {exc.strerror}")]) from exc
    return parse_policies(data, source=str(path))


def parse_policies(data: bytes, *, source: str) -> LoadedPolicies:
    """Validate the bytes of a policies file named ``source`` (used in messages)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            source, [_problem(f"is not UTF-8 text (bad byte at offset {exc.start})")]
        ) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [_syntax_problem(exc, text)]) from None
    positions = locate(text)
    try:
        policies = Policies.model_validate(raw)
    except ValidationError as exc:
        problems = [_validation_problem(err, positions) for err in exc.errors()]
        raise PolicyError(source, _in_file_order(problems)) from None
    problems = [_place(p, positions) for p in semantic_problems(policies)]
    if problems:
        raise PolicyError(source, _in_file_order(problems))
    return LoadedPolicies(
        policies=policies, source=source, sha256=hashlib.sha256(data).hexdigest(), data=data
    )


def placed(problems: Sequence[Problem], loaded: LoadedPolicies) -> list[Problem]:
    """``problems`` found later (against the kinds registry, say) given the line and column
    of their key in ``loaded``'s text, in file order, as the parse's own problems are."""
    positions = locate(loaded.data.decode("utf-8"))
    return _in_file_order([_place(p, positions) for p in problems])


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


def _problem(message: str) -> Problem:
    return Problem(path="", message=message)


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str) -> Problem:
    message = str(exc)
    if match := _TOML_POSITION.match(message):
        what, line, column = match.group(1), int(match.group(2)), int(match.group(3))
        return Problem(path="", message=f"TOML syntax: {what}", line=line, column=column)
    if match := _TOML_END.match(message):
        lines = text.splitlines() or [""]
        return Problem(
            path="",
            message=f"TOML syntax: {match.group(1)} at end of file",
            line=len(lines),
            column=len(lines[-1]) + 1,
        )
    return Problem(path="", message=f"TOML syntax: {message}")


def _place(problem: Problem, positions: dict[Any, tuple[int, int]]) -> Problem:
    found = nearest(positions, _split_path(problem.path))
    if found is None:
        return problem
    return Problem(path=problem.path, message=problem.message, line=found[0], column=found[1])


def _split_path(path: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for match in re.finditer(r'"([^"]*)"|\[(\d+)\]|([^.\[\]"]+)', path):
        quoted, index, bare = match.groups()
        parts.append(int(index) if index is not None else (quoted if quoted is not None else bare))
    return tuple(parts)


def _render_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = f'"{part}"' if ("." in part or " " in part) else part
            out += f".{key}" if out else key
    return out


def _validation_problem(err: ErrorDetails, positions: dict[Any, tuple[int, int]]) -> Problem:
    loc = tuple(part for part in err["loc"] if not _is_union_tag(part))
    message = _message(err, loc)
    found = nearest(positions, loc)
    line, column = found if found else (None, None)
    return Problem(path=_render_path(loc), message=message, line=line, column=column)


def _is_union_tag(part: str | int) -> bool:
    # pydantic names the branch of an Optional it tried ("float", "function-before[...]").
    return isinstance(part, str) and (part in {"float", "none"} or "[" in part)


def _got(value: Any) -> str:
    return f"(got {value!r})"


def _message(err: ErrorDetails, loc: tuple[str | int, ...]) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    bounds = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx[key]} {_got(value)}"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} {_got(value)}"
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    types = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
        "tuple_type": "an array",
        "list_type": "an array",
    }
    if kind in types:
        return f"must be {types[kind]} {_got(value)}"
    return f"{err['msg']} {_got(value)}"


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    hint = ""
    if allowed:
        close = _closest(key, allowed)
        hint = (
            f"; did you mean '{close}'?"
            if close
            else f"; allowed here: {', '.join(sorted(allowed))}"
        )
    return f"unknown key '{key}'{hint}"


def _closest(key: str, allowed: list[str]) -> str | None:
    """The allowed key the operator most likely meant: a shared stem first, then spelling."""
    stem = max(allowed, key=lambda a: _shared_prefix(a, key))
    if _shared_prefix(stem, key) >= 4:
        return stem
    close = difflib.get_close_matches(key, allowed, n=1)
    return close[0] if close else None


def _shared_prefix(a: str, b: str) -> int:
    size = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        size += 1
    return size


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts, walking the models through named tables."""
    model: Any = Policies
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            # A named table (retry.NAME): keep the model of the dict's values.
            continue
        model = _model_of(field.annotation)
        if model is None:
            return []
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
