"""Remove every secret the run knows from text and structured values.

A secret leaks in whatever form the code around it gave it: quoted for a shell, escaped
for JSON or PowerShell, URL-encoded, or base64-encoded inside a ``-EncodedCommand``
(hashicorp/packer#12918, packer-plugin-azure#358). So each secret is expanded once into
all the forms it may take, and one compiled alternation replaces them all with ``***``.

Forms covered, for each secret ``s``:

* textual: raw; ``shlex.quote``; POSIX double-quoted; PowerShell single- and
  double-quoted; JSON (ASCII and non-ASCII); Python ``repr``; URL-encoded
  (``quote``, ``quote_plus``); XML/HTML-escaped.
* base64 of the UTF-8 and of the UTF-16LE bytes of ``s`` and of its escaped forms that a
  script may contain (shell- and PowerShell-quoted), standard and URL-safe alphabets,
  standalone (with padding) and embedded at any of the 3 byte alignments inside a longer
  base64 text.

Limits, stated honestly:

* Embedded base64 is matched on the characters that depend on the secret's bytes only;
  the one or two characters at each edge mix in neighbouring bytes and survive, which
  reveals at most a few bits. A secret shorter than 3 bytes has too few such characters
  to be recognized inside a longer base64 text (its standalone and textual forms still
  are).
* base64 wrapped over several lines (MIME, PEM), compressed, encrypted or otherwise
  transformed text (hex, rot13, split across two log events) is not recognized.
* A secret the run never learned (not in the registry nor given) cannot be removed; the
  key-name rule (``password=...`` in a structured event) is the only net for those.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from agent.secrets import REGISTRY, SecretRegistry

MASK = "***"

# Key names whose values are secret whatever they contain (packer#3447). Matched as a
# substring, case-insensitively: "adminPassword", "ssh_passphrase", "api-key".
SECRET_KEY_RE = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|api[_-]?key|credential", re.IGNORECASE
)

# Characters of an embedded base64 core that are fixed by the secret alone, for a secret
# starting at byte offset 0, 1 or 2 of a 3-byte group: skip the characters mixing in
# preceding bytes.
_LEADING_MIXED_CHARS = (0, 2, 3)
# A shorter core would match random base64 too often to mean anything.
_MIN_CORE_CHARS = 4


def _textual_forms(secret: str) -> set[str]:
    double_quoted_sh = re.sub(r'(["\\$`])', r"\\\1", secret)
    double_quoted_ps = re.sub(r'(["`$])', r"`\1", secret)
    return {
        secret,
        shlex.quote(secret),
        double_quoted_sh,
        secret.replace("'", "''"),
        double_quoted_ps,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        html.escape(secret),
        html.escape(secret, quote=False),
    }


def _scripted_forms(secret: str) -> set[str]:
    """The forms a secret takes inside a script that is then base64-encoded as a whole."""
    return {secret, shlex.quote(secret), secret.replace("'", "''")}


def _base64_forms(data: bytes) -> set[str]:
    forms = {base64.b64encode(data).decode("ascii")}
    for offset, skip in enumerate(_LEADING_MIXED_CHARS):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii").rstrip("=")
        total = offset + len(data)
        # Whole groups give 4 pure characters; a trailing group of r bytes gives r.
        end = (total // 3) * 4 + total % 3
        core = encoded[skip:end]
        if len(core) >= _MIN_CORE_CHARS:
            forms.add(core)
    return forms | {f.translate(_URLSAFE) for f in forms}


_URLSAFE = str.maketrans("+/", "-_")


def secret_forms(secret: str) -> set[str]:
    """Every string a secret may appear as in a log (see the module docstring)."""
    forms = _textual_forms(secret)
    for scripted in _scripted_forms(secret):
        forms |= _base64_forms(scripted.encode("utf-8"))
        forms |= _base64_forms(scripted.encode("utf-16-le"))
    forms.discard("")
    return forms


_END = ""


def _trie_pattern(forms: Iterable[str]) -> str:
    """One regex matching any of ``forms``, the longest one at each position.

    A plain ``a|b|c`` alternation tries every form at every position; a trie tries one
    branch per character, which more than halves the time on a MiB of text
    (bench.redaction, 61 forms: 84 -> 35 ms).
    """
    trie: dict[str, Any] = {}
    for form in forms:
        node = trie
        for char in form:
            node = node.setdefault(char, {})
        node[_END] = {}

    def build(node: dict[str, Any]) -> str:
        literal = ""
        # Single-child chains become literals, so recursion depth is the number of
        # branch points, not the length of a form (a long secret's base64).
        while len(node) == 1 and _END not in node:
            ((char, node),) = node.items()
            literal += re.escape(char)
        branches = [re.escape(c) + build(child) for c, child in sorted(node.items()) if c]
        if not branches:
            return literal
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Greedy optional: a longer form through this node wins over ending here.
        return literal + (f"(?:{body})?" if _END in node else body)

    return build(trie)


def _is_flag(value: object) -> bool:
    return value is None or isinstance(value, bool)


class Redactor:
    """Replace secrets in text and, recursively, in dicts, lists and tuples.

    It knows the secrets given to it plus, unless ``registry`` is None, every value in
    the run's :data:`agent.secrets.REGISTRY` at the time of each call: secrets read after
    logging was configured are still removed. Patterns are compiled once per distinct
    secret set.
    """

    def __init__(
        self, secrets: Iterable[str] = (), *, registry: SecretRegistry | None = REGISTRY
    ) -> None:
        self._explicit = frozenset(s for s in secrets if s)
        self._registry = registry
        self._compiled_for: frozenset[str] | None = None
        self._pattern: re.Pattern[str] | None = None

    def _current_pattern(self) -> re.Pattern[str] | None:
        secrets = self._explicit
        if self._registry is not None:
            secrets = secrets | self._registry.values()
        if secrets != self._compiled_for:
            forms: set[str] = set()
            for secret in secrets:
                forms |= secret_forms(secret)
            self._pattern = re.compile(_trie_pattern(forms)) if forms else None
            self._compiled_for = secrets
        return self._pattern

    def current_pattern(self) -> re.Pattern[str] | None:
        """The pattern for the secrets known now: the same object until a secret is added."""
        return self._current_pattern()

    def redact_text(self, text: str) -> str:
        pattern = self._current_pattern()
        return pattern.sub(MASK, text) if pattern is not None else text

    def redact(self, value: object) -> object:
        """A copy of ``value`` without secrets.

        str, int, float, bool and None keep their type; dicts, lists and tuples are
        walked (values of secret-looking keys become ``***``); bytes are decoded as
        UTF-8; any other object becomes its ``repr`` (paths: their ``str``), because a
        renderer would turn it into text after redaction otherwise.
        """
        pattern = self._current_pattern()
        return self._walk(value, pattern)

    def redact_value_of(self, key: str, value: object) -> object:
        """``value`` as :meth:`redact` leaves it under ``key`` in a dict."""
        return self._walk_keyed(key, value, self._current_pattern())

    def _walk(self, value: object, pattern: re.Pattern[str] | None) -> object:
        if isinstance(value, str):
            return pattern.sub(MASK, value) if pattern is not None else value
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {
                self._walk(k, pattern): self._walk_keyed(k, v, pattern) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._walk(v, pattern) for v in value]
        if isinstance(value, tuple):
            return tuple(self._walk(v, pattern) for v in value)
        if isinstance(value, bytes | bytearray):
            return self._walk(bytes(value).decode("utf-8", "replace"), pattern)
        if isinstance(value, os.PathLike):
            return self._walk(os.fspath(value), pattern)
        return self._walk(repr(value), pattern)

    def _walk_keyed(self, key: object, value: object, pattern: re.Pattern[str] | None) -> object:
        # None and booleans say whether a secret is set, not what it is.
        if isinstance(key, str) and SECRET_KEY_RE.search(key) and not _is_flag(value):
            return MASK
        return self._walk(value, pattern)


@dataclass(frozen=True)
class _Redacted:
    source: object
    pattern: re.Pattern[str] | None
    clean: object


class WrittenOnceCache:
    """Redacted copies of values that are assigned whole and never changed in place.

    result.json is redacted whole at every rewrite, and about half of it (the plan) is
    the very same object from the moment it is planned to the end of the run. A copy is
    reused while its key still holds the same object and the known secrets are the same;
    a new object or a newly learned secret redacts again. Only for values nobody mutates:
    the cache compares identity, not content.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._copies: dict[str, _Redacted] = {}

    def redact(self, key: str, value: object) -> object:
        pattern = self._redactor.current_pattern()
        copy = self._copies.get(key)
        if copy is not None and copy.source is value and copy.pattern is pattern:
            return copy.clean
        clean = self._redactor.redact_value_of(key, value)
        self._copies[key] = _Redacted(value, pattern, clean)
        return clean
