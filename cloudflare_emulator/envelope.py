"""The v4 response envelope (FACTS.md §1) and the exception handlers raise to answer with a failure."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

JSON = dict[str, Any]


class ApiError(Exception):
    """Raised anywhere in a handler; the app turns it into a failure envelope with this status."""

    def __init__(self, status: int, code: int, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.pointer = pointer


def json_response(body: JSON, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def success(result: Any, result_info: JSON | None = None, status: int = 200) -> Response:
    body: JSON = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return json_response(body, status)


def failure(status: int, code: int, message: str, pointer: str | None = None) -> Response:
    error: JSON = {"code": code, "message": message}
    if pointer is not None:
        # rulesets_Message carries the JSON pointer of the offending field.
        error["source"] = {"pointer": pointer}
    return json_response({"success": False, "errors": [error], "messages": [], "result": None}, status)


def failure_from(error: ApiError) -> Response:
    return failure(error.status, error.code, error.message, error.pointer)
