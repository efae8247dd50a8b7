"""Rules-language expression checks the way Cloudflare's edge applies them on every ruleset write."""

from __future__ import annotations

from typing import Any

import octorules_wirefilter

MAX_EXPRESSION_LENGTH = 4096  # FACTS.md §6


def expression_error(expression: str) -> str | None:
    """The reason Cloudflare would refuse this expression, or None if it is acceptable."""
    if not expression.strip():
        return "the expression must not be empty"
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return f"the expression is {len(expression)} characters long; the maximum is {MAX_EXPRESSION_LENGTH}"
    try:
        parsed: Any = octorules_wirefilter.parse_expression(expression)
    except Exception as exc:  # the parser is native code; treat anything it raises as a parse failure
        return f"Filter parsing error: {exc}"
    if isinstance(parsed, dict) and parsed.get("error"):
        return str(parsed["error"]).strip()
    # The parser accepts `ip.src in {}`, Cloudflare does not.
    if has_empty_inline_set(expression):
        return "Filter parsing error: an inline set `{}` must contain at least one value"
    return None


def has_empty_inline_set(expression: str) -> bool:
    """True if a `{` ... `}` with only whitespace between appears outside string literals."""
    index = 0
    length = len(expression)
    while index < length:
        char = expression[index]
        if char == '"':
            index = _skip_quoted(expression, index)
            continue
        if char == "r" and _starts_raw_string(expression, index):
            index = _skip_raw(expression, index)
            continue
        if char == "{":
            closing = index + 1
            while closing < length and expression[closing].isspace():
                closing += 1
            if closing < length and expression[closing] == "}":
                return True
        index += 1
    return False


def _skip_quoted(expression: str, start: int) -> int:
    index = start + 1
    while index < len(expression):
        if expression[index] == "\\":
            index += 2
            continue
        if expression[index] == '"':
            return index + 1
        index += 1
    return index


def _starts_raw_string(expression: str, index: int) -> bool:
    if index > 0 and (expression[index - 1].isalnum() or expression[index - 1] in "._"):
        return False  # part of an identifier such as http.referer
    rest = expression[index + 1 :].lstrip("#")
    return rest.startswith('"')


def _skip_raw(expression: str, start: int) -> int:
    hashes = 0
    index = start + 1
    while index < len(expression) and expression[index] == "#":
        hashes += 1
        index += 1
    terminator = '"' + "#" * hashes
    end = expression.find(terminator, index + 1)
    return len(expression) if end < 0 else end + len(terminator)
