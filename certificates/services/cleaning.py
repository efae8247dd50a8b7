"""Names and notes users type: length limits and no control characters."""

from __future__ import annotations

import unicodedata

from certificates.services.errors import PolicyError

MAX_NAME_LENGTH = 100
MAX_NOTE_LENGTH = 500


def clean_name(name: str, *, what: str) -> str:
    """A display name: no control characters (they break email headers and PostgreSQL refuses NUL)."""
    name = (name or "").strip()
    if not name:
        raise PolicyError(f"Give the {what} a name, for example the machine or service that will use it.")
    if len(name) > MAX_NAME_LENGTH:
        raise PolicyError(f"The name is longer than {MAX_NAME_LENGTH} characters.")
    if has_control_characters(name):
        raise PolicyError("The name contains control characters; use letters, digits, spaces and punctuation.")
    return name


def has_control_characters(text: str, *, allowed: str = "") -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cs", "Cf") and char not in allowed for char in text)


def clean_note(note: str) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise PolicyError(f"The note is longer than {MAX_NOTE_LENGTH} characters.")
    if has_control_characters(note, allowed="\n\r\t"):
        raise PolicyError("The note contains control characters.")
    return note
