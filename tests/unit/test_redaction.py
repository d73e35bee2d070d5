"""The redactor removes every known secret in every form it may take."""

from __future__ import annotations

import base64
import json
import random
import shlex
import string
from urllib.parse import quote, quote_plus

import pytest

from agent.redaction import MASK, Redactor, WrittenOnceCache
from agent.secrets import SecretRegistry

SECRET = "Sup3r'S3cret\"$x&y=z/é"  # noqa: S105 (the test secret)


@pytest.fixture
def redactor() -> Redactor:
    return Redactor([SECRET], registry=None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_raw_secret_is_replaced(redactor: Redactor) -> None:
    """A secret written as is becomes ***."""
    assert redactor.redact_text(f"login with {SECRET} now") == f"login with {MASK} now"


def test_text_without_secrets_is_unchanged(redactor: Redactor) -> None:
    """Ordinary text passes through untouched."""
    text = "apt-get clean && rm -rf /var/lib/apt/lists/*"
    assert redactor.redact_text(text) == text


@pytest.mark.parametrize(
    "form",
    [
        shlex.quote(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        SECRET.replace("'", "''"),  # PowerShell single-quoted
        repr(SECRET)[1:-1],
        _b64(SECRET.encode("utf-8")),
        _b64(SECRET.encode("utf-16-le")),
        base64.urlsafe_b64encode(SECRET.encode("utf-8")).decode("ascii"),
    ],
    ids=[
        "shell-quoted",
        "json-ascii",
        "json-unicode",
        "url-quote",
        "url-quote-plus",
        "powershell-quoted",
        "python-repr",
        "base64-utf8",
        "base64-utf16le",
        "base64-urlsafe",
    ],
)
def test_encoded_forms_are_replaced(redactor: Redactor, form: str) -> None:
    """Each encoding of the secret disappears, leaving no piece of it behind."""
    out = redactor.redact_text(f"cmd {form} end")
    assert out == f"cmd {MASK} end"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le"])
@pytest.mark.parametrize("prefix_len", range(6))
def test_secret_inside_a_longer_base64_script_is_removed(encoding: str, prefix_len: int) -> None:
    """A secret embedded at any byte alignment of a larger encoded script is masked,
    leaving at most the one character at each edge that mixes in neighbouring bytes."""
    secret = "Tr0ub4dor&3-horse"  # noqa: S105 (the test secret)
    redactor = Redactor([secret], registry=None)
    before = "x" * prefix_len + "$p = '"
    script = before + secret + "'; Connect-Service -Password $p; exit 0"
    encoded = _b64(script.encode(encoding))
    out = redactor.redact_text(encoded)
    assert out.count(MASK) == 1
    start = out.index(MASK)
    end = len(encoded) - (len(out) - start - len(MASK))  # masked span is encoded[start:end]
    first_byte = len(before.encode(encoding))
    last_byte = first_byte + len(secret.encode(encoding))
    first_char, last_char = first_byte * 8 // 6, -(-last_byte * 8 // 6)
    assert start <= first_char + 1
    assert end >= last_char - 1


def test_powershell_escaped_secret_inside_encoded_command_is_removed() -> None:
    """A secret quoted for PowerShell inside a UTF-16LE -EncodedCommand is removed."""
    secret = "it's-a-s3cret"  # noqa: S105 (the test secret)
    redactor = Redactor([secret], registry=None)
    script = "$ErrorActionPreference='Stop'; $pw = 'it''s-a-s3cret'; Do-Thing $pw"
    encoded = _b64(script.encode("utf-16-le"))
    out = redactor.redact_text(encoded)
    assert out != encoded
    assert MASK in out


def test_longest_form_wins() -> None:
    """A shell-quoted secret is masked whole, quotes included."""
    secret = "a'b"  # noqa: S105 (the test secret)
    redactor = Redactor([secret], registry=None)
    assert redactor.redact_text(f"echo {shlex.quote(secret)}") == f"echo {MASK}"


def test_structures_are_walked_recursively(redactor: Redactor) -> None:
    """Secrets are removed from dict values and keys, lists and tuples at any depth."""
    value = {"cmd": [f"echo {SECRET}", ("x", {"deep": SECRET})], SECRET: 1}
    assert redactor.redact(value) == {"cmd": [f"echo {MASK}", ("x", {"deep": MASK})], MASK: 1}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "adminPassword",
        "passwd",
        "client_secret",
        "api_key",
        "api-key",
        "token",
        "credentials",
        "ssh_passphrase",
    ],
)
def test_secret_looking_keys_are_masked(key: str) -> None:
    """Values under secret-looking keys are masked even when the secret is unknown."""
    redactor = Redactor(registry=None)
    assert redactor.redact({key: "never-registered"}) == {key: MASK}


def test_secret_looking_keys_keep_flags() -> None:
    """None and booleans under secret-looking keys say only whether a secret is set."""
    redactor = Redactor(registry=None)
    assert redactor.redact({"password": None, "token_set": True}) == {
        "password": None,
        "token_set": True,
    }


def test_other_objects_are_rendered_then_redacted(redactor: Redactor) -> None:
    """An exception or bytes carrying the secret is turned into redacted text."""
    out = redactor.redact([RuntimeError(f"bad {SECRET}"), SECRET.encode("utf-8"), 3, 1.5])
    assert out == [f"RuntimeError('bad {MASK}')", MASK, 3, 1.5]


def test_registry_values_added_later_are_redacted() -> None:
    """A secret registered after the redactor was built is still removed."""
    registry = SecretRegistry()
    redactor = Redactor(registry=registry)
    assert redactor.redact_text("pw=late-secret") == "pw=late-secret"
    registry.add("late-secret")
    assert redactor.redact_text("pw=late-secret") == f"pw={MASK}"


def test_one_mebibyte_with_three_secrets_ends_with_the_mask() -> None:
    """1 MiB of mixed text and base64 ending with a secret is redacted to end with the mask
    and hold no secret (how fast: bench/redaction.py, on the same text)."""
    secrets = ["hunter2-Pass'w\"rd$x", "S3cr3tT0ken_abcdefghijkl", "pässwörd 42&x=y"]
    redactor = Redactor(secrets, registry=None)
    rng = random.Random(1)  # noqa: S311 (reproducible filler text)
    words = ["".join(rng.choices(string.ascii_letters, k=rng.randint(2, 10))) for _ in range(500)]
    text = " ".join(rng.choices(words, k=120_000))[:700_000]
    text = (text + _b64(rng.randbytes(300_000)) + secrets[1])[-(1 << 20) :]
    out = redactor.redact_text(text)
    assert out.endswith(MASK)
    assert [secret for secret in secrets if secret in out] == []


def test_written_once_cache_reuses_the_copy_of_the_same_object() -> None:
    """A value assigned once is walked once, however often result.json is rewritten."""
    cache = WrittenOnceCache(Redactor(["hunter2"], registry=None))
    plan = {"steps": [{"command": "echo hunter2"}]}
    first = cache.redact("plan", plan)
    assert first == {"steps": [{"command": f"echo {MASK}"}]}
    assert cache.redact("plan", plan) is first


def test_written_once_cache_redacts_a_new_object_again() -> None:
    """Assigning another value under the key is never answered from the old copy."""
    cache = WrittenOnceCache(Redactor(["hunter2"], registry=None))
    cache.redact("plan", {"command": "echo hunter2"})
    assert cache.redact("plan", {"command": "echo other"}) == {"command": "echo other"}


def test_written_once_cache_redacts_again_once_a_secret_is_learned() -> None:
    """A secret registered after the first rewrite is removed from the reused value too."""
    registry = SecretRegistry()
    cache = WrittenOnceCache(Redactor(registry=registry))
    facts = {"hostname": "s3cr3t-host"}
    assert cache.redact("facts", facts) == facts
    registry.add("s3cr3t-host")
    assert cache.redact("facts", facts) == {"hostname": MASK}


def test_written_once_cache_masks_a_secret_looking_key() -> None:
    """The key rule of ``redact`` holds for a cached section as for a dict's value."""
    cache = WrittenOnceCache(Redactor(registry=None))
    assert cache.redact("password", "plain") == MASK
