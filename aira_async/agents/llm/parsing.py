"""Turn LLM replies into proposals and analyses, accepting the forms models really write.

A solution reply should read ``PLAN: ...`` then ``ARRANGEMENT:`` and a fenced block, but models
also answer with JSON (``{"plan": ..., "arrangement": [...]}``), bare lists, brackets, commas,
lower case, repetition (``(mA M)x8``) and prose around it; `populations.arrangement.Arrangement`
parses the arrangement itself. A reply that holds no valid arrangement becomes a
`ParsedSolution` with `error` set (the node is stored buggy with that reason; Debug may repair
it). An Analyze reply is a JSON object, possibly fenced or wrapped in prose.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from populations.arrangement import Arrangement, ArrangementError

__all__ = ["Analysis", "ParsedSolution", "parse_analysis", "parse_solution"]

MAX_RAW_CHARS = 4000
"""A reply that does not parse is kept (for Debug and for people) up to this length."""

_LABEL = re.compile(r"^\W*(?:arrangement|architecture|solution|answer)\W*:?", re.I | re.M)
_PLAN = re.compile(r"^\W*plan\W*:?\s*", re.I | re.M)
_FENCE_START = re.compile(r"```")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedSolution:
    """A parsed reply: the plan, the canonical arrangement (or the raw reply), and an error."""

    plan: str
    text: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """What Analyze judged. `metric` is the model's report, never the node's fitness."""

    is_bug: bool
    summary: str
    metric: float | None


def parse_solution(
    reply: str,
    *,
    alphabet: tuple[str, ...],
    length: int,
    finish_reason: str | None = None,
) -> ParsedSolution:
    """Plan and arrangement of a Draft/Improve/Debug reply.

    Candidates, in order: a JSON object with an ``arrangement`` (or ``layers``) field; the text
    after an ``ARRANGEMENT:`` label; the whole reply (`Arrangement.parse` then tries fenced
    blocks, lines from the last, and bracketed parts).
    """
    if not reply.strip():
        reason = " (cut off at max_tokens)" if finish_reason in ("length", "max_tokens") else ""
        return ParsedSolution(plan="", text="", error=f"empty reply{reason}")
    structured = _json_solution(reply)
    plan = structured[0] if structured else _plan(reply)
    candidates = [structured[1]] if structured else []
    label = _LABEL.search(reply)
    if label is not None:
        candidates.append(reply[label.end() :])
    candidates.append(reply)
    first_error: str | None = None
    for candidate in candidates:
        try:
            arrangement = Arrangement.parse(candidate, alphabet=alphabet, length=length)
        except ArrangementError as exc:
            first_error = first_error or str(exc)
            continue
        return ParsedSolution(plan=plan, text=arrangement.key)
    truncated = finish_reason in ("length", "max_tokens")
    reason = f"unparsable reply: {first_error}" + (" (cut off at max_tokens)" if truncated else "")
    return ParsedSolution(plan=plan, text=reply.strip()[:MAX_RAW_CHARS], error=reason)


def _plan(reply: str) -> str:
    """The plan: after a ``PLAN:`` label up to the arrangement, else the prose before it."""
    match = _PLAN.search(reply)
    start = match.end() if match else 0
    end = len(reply)
    for stop in (_LABEL.search(reply, start), _FENCE_START.search(reply, start)):
        if stop is not None and stop.start() >= start:
            end = min(end, stop.start())
    plan = reply[start:end].strip()
    return " ".join(plan.split())[:2000]


def _json_objects(text: str) -> list[Any]:
    """Every JSON value that starts at a ``{`` of `text` and decodes, in order."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"\{", text):
        try:
            value, _end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        found.append(value)
    return found


def _json_solution(reply: str) -> tuple[str, str] | None:
    for value in _json_objects(reply):
        if not isinstance(value, dict):
            continue
        layers = value.get("arrangement", value.get("layers"))
        if isinstance(layers, list):
            layers = " ".join(str(x) for x in layers)
        if isinstance(layers, str):
            plan = value.get("plan", "")
            return (plan if isinstance(plan, str) else json.dumps(plan)), layers
    return None


def parse_analysis(reply: str) -> Analysis:
    """The ``{is_bug, summary, metric}`` object of an Analyze reply.

    Accepts a fenced or prose-wrapped object, booleans written as strings ("true", "yes"), and a
    metric written as a string. Raises ValueError naming what is missing or wrong.
    """
    for value in _json_objects(reply):
        if isinstance(value, dict) and "is_bug" in value:
            return Analysis(
                is_bug=_boolean(value["is_bug"]),
                summary=str(value.get("summary", "")).strip()[:2000],
                metric=_number(value.get("metric")),
            )
    raise ValueError("no JSON object with an 'is_bug' field in the reply")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "true",
        "yes",
        "1",
        "false",
        "no",
        "0",
    ):
        return value.strip().lower() in ("true", "yes", "1")
    raise ValueError(f"is_bug must be a boolean, got {value!r}")


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None
