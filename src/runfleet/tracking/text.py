"""Checks on text and nesting that every tracked string and structure must pass.

A Python ``str`` may hold a lone surrogate (``"\\ud800"``, e.g. from
``bytes.decode(errors="surrogateescape")``) that UTF-8 cannot encode: once stored, every
reader that writes UTF-8 (JSON responses, CSV) would fail on it. Such text is refused where
it enters (``TypeError`` naming the key). Nested structures are limited to
:data:`MAX_DEPTH` levels, so a deeply nested (or self-referencing) value gets a clear error
instead of a ``RecursionError``.
"""

from __future__ import annotations

MAX_DEPTH = 100
"""How deeply dicts (and lists, in config values) may nest in ``log()`` and config."""


def has_surrogates(text: str) -> bool:
    """True if ``text`` holds a lone surrogate (U+D800 to U+DFFF), which UTF-8 cannot encode.

    Example:
        >>> has_surrogates("caf\\u00e9"), has_surrogates("a\\ud800b")
        (False, True)
    """
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def surrogate_error(what: str) -> TypeError:
    """The error for text with a lone surrogate; ``what`` names the key or field, e.g.
    ``"cannot log 'note'"``."""
    return TypeError(
        f"{what}: the text holds a lone surrogate (a code point between U+D800 and U+DFFF, "
        f"e.g. from bytes decoded with errors='surrogateescape'), which cannot be stored as "
        f"UTF-8; decode the bytes with errors='replace' or remove it")


def check_text(what: str, text: str) -> str:
    """Return ``text``, or raise :func:`surrogate_error` (``TypeError``) naming ``what``."""
    if has_surrogates(text):
        raise surrogate_error(what)
    return text


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as a ``\\udXXX`` escape (for messages
    runfleet writes itself, e.g. a traceback recorded as an alert).

    Example:
        >>> escape_surrogates("a\\ud800b")
        'a\\\\ud800b'
    """
    if not has_surrogates(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def too_deep_error(what: str, path: str) -> TypeError:
    """The error for a structure nested more than :data:`MAX_DEPTH` levels; ``path`` is the
    key where the limit was crossed (shortened in the message)."""
    shown = path if len(path) <= 80 else f"{path[:60]}...{path[-16:]}"
    return TypeError(f"{what}: nested more than {MAX_DEPTH} levels deep (at {shown!r}); "
                     f"flatten it, or store it as text")
