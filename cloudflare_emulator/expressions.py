"""Rules-language expression checks the way Cloudflare's edge applies them on every ruleset write.

The checks themselves (length, Cloudflare's own parser, empty inline sets) live in cloudflare.expressions,
shared with the client, which runs them before it sends anything.
"""

from __future__ import annotations

from cloudflare.expressions import MAX_EXPRESSION_LENGTH, ExpressionError, validate

__all__ = ["MAX_EXPRESSION_LENGTH", "expression_error"]


def expression_error(expression: str) -> str | None:
    """The reason Cloudflare would refuse this expression, or None if it is acceptable."""
    if not expression.strip():
        return "the expression must not be empty"
    try:
        validate(expression)
    except ExpressionError as exc:
        return str(exc)
    return None
