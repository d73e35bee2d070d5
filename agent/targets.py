"""Target URLs: where and how to connect. Secrets never live here.

``ssh://user@host[:port]``, ``winrm+https://user@host[:5986]``, ``winrm://user@host[:5985]``.
A password in the URL is refused: it would end up in shell history, argv and logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from agent.errors import UsageError

DEFAULT_PORTS = {"ssh": 22, "winrm+https": 5986, "winrm": 5985}
#: The os-release ``ID`` agent.facts_windows reports for every Windows target, and the
#: one agent.catalog matches Windows profiles on. Here, below both, so that gathering
#: facts needs no catalog.
WINDOWS_ID = "windows"


@dataclass(frozen=True)
class Target:
    scheme: str
    user: str
    host: str
    port: int

    @property
    def display(self) -> str:
        """The URL without anything secret, for logs and reports."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.user}@{host}:{self.port}"

    @property
    def is_windows(self) -> bool:
        return self.scheme.startswith("winrm")


# USER:PASSWORD@ in a URL. A password may hold '/', '?', '#' or '@' that urlsplit then
# reads as the end of the host part, so everything from the user's ':' to the URL's last
# '@' is hidden: more than the password at worst, never less.
_USERINFO_PASSWORD = re.compile(r"^([^:/?#]*://[^:/?#@]*):(.*)@", re.DOTALL)


def without_password(url: str) -> str:
    """``url`` with any password in it replaced by ``***``: safe to put in a message."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", url)


def parse_target(url: str) -> Target:
    """Parse a target URL, or raise UsageError naming what is wrong with it.

    No message ever repeats a password the URL carries.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed or malformed [address]
        # The URL is not repeated: it may hold a password this parser never got to see.
        raise UsageError(f"--target: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    url = without_password(url)
    if scheme not in DEFAULT_PORTS:
        known = ", ".join(f"{s}://" for s in DEFAULT_PORTS)
        raise UsageError(f"target {url!r}: unknown scheme {parts.scheme!r} (expected {known})")
    if parts.password is not None:
        raise UsageError(
            f"target {scheme}://…: a password in the URL is refused; "
            "use --password-env VAR or --password-file FILE"
        )
    if not parts.username:
        raise UsageError(f"target {url!r}: no user (expected {scheme}://USER@HOST)")
    if not parts.hostname:
        raise UsageError(f"target {url!r}: no host (expected {scheme}://USER@HOST)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"target {url!r}: unexpected path or query after the host")
    try:
        given = parts.port
    except ValueError:
        given = -1  # not a number, or past 65535
    # Port 0 is not "the default": it is no port at all, so it is refused like 70000.
    if given is not None and not 1 <= given <= 65535:
        raise UsageError(f"target {url!r}: the port must be a number from 1 to 65535")
    port = DEFAULT_PORTS[scheme] if given is None else given
    user = unquote(parts.username)
    for what, value in (("user", user), ("host", parts.hostname)):
        if value.startswith("-"):
            # ssh, scp and the restore hints would read it as an option (-oProxyCommand=...).
            raise UsageError(f"target {url!r}: the {what} begins with '-'")
    return Target(scheme=scheme, user=user, host=parts.hostname, port=port)
