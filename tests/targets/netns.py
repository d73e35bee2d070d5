"""A private point-to-point link per target: its own network namespace and a veth pair.

The host end gets 10.213.N.1/30, the namespace's `tgt0` gets 10.213.N.2/30; no routes, no
forwarding, no NAT, so the guest can reach nothing but the host end of its own link. The
inner name `tgt0` matters: no .network file in the guest matches it, so nothing in the guest
reconfigures the address (test-targets.md, section (c)).

Slot N is claimed with an flock on /run/imageprep-tests/slot-N.lock held for the link's
lifetime (so parallel test processes never collide), and only if its names are unused and
its /30 overlaps no host address or route.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.targets.commands import CommandFailed, run

SLOT_SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
GUEST_INTERFACE = "tgt0"
_HOST_PREFIX = "ipt-h"
_LOCK_DIR = Path("/run/imageprep-tests")
_SLOTS = 256


class NoFreeSlot(RuntimeError):
    """Every 10.213.N.0/30 slot is taken, or collides with the host's networks."""


@dataclass(frozen=True)
class Link:
    """One claimed slot: names and addresses of a private host<->guest link."""

    slot: int

    @property
    def netns(self) -> str:
        """Network namespace name (`ip netns`), also the /run/netns/<name> file."""
        return f"imageprep-{self.slot}"

    @property
    def netns_path(self) -> Path:
        """What systemd-nspawn --network-namespace-path takes."""
        return Path("/run/netns") / self.netns

    @property
    def host_interface(self) -> str:
        """Host end of the veth pair (at most 15 characters)."""
        return f"{_HOST_PREFIX}{self.slot}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The /30 this link uses."""
        return ipaddress.IPv4Network(f"10.213.{self.slot}.0/30")

    @property
    def host_ip(self) -> str:
        """Address of the host end."""
        return str(self.subnet.network_address + 1)

    @property
    def guest_ip(self) -> str:
        """Address of tgt0 inside the namespace: where the target's sshd listens."""
        return str(self.subnet.network_address + 2)

    def in_use(self) -> bool:
        """True while this slot's namespace or host interface exists.

        A name left by a crashed run is skipped, never reclaimed: its container may still run.
        """
        return self.netns_path.exists() or Path("/sys/class/net", self.host_interface).exists()


@contextmanager
def private_link() -> Iterator[Link]:
    """Claim a free slot, create its namespace and veth pair; delete both on exit."""
    link, lock = _claim_slot()
    try:
        _create(link)
        try:
            yield link
        finally:
            _delete(link)
    finally:
        lock.close()


def _claim_slot() -> tuple[Link, IO[str]]:
    _LOCK_DIR.mkdir(mode=0o755, exist_ok=True)
    host_networks = _host_networks()
    for slot in range(_SLOTS):
        link = Link(slot)
        if link.in_use() or any(link.subnet.overlaps(net) for net in host_networks):
            continue
        lock = (_LOCK_DIR / f"slot-{slot}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        # Re-check under the lock: another process may have just released it after use.
        if link.in_use():
            lock.close()
            continue
        return link, lock
    raise NoFreeSlot(f"no free /30 in {SLOT_SUPERNET} for a test target")


def _host_networks() -> list[ipaddress.IPv4Network]:
    networks = []
    for command in (
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        ["ip", "-j", "-4", "addr", "show"],
    ):
        for entry in json.loads(run(command) or "[]"):
            # Other targets' links are slots (their locks and names guard them), not collisions.
            if not str(entry.get("dev") or entry.get("ifname") or "").startswith(_HOST_PREFIX):
                networks.extend(_networks_in(entry))
    return networks


def _networks_in(entry: dict[str, object]) -> list[ipaddress.IPv4Network]:
    found = []
    destination = entry.get("dst")
    if isinstance(destination, str) and destination not in ("default", "0.0.0.0/0"):
        found.append(ipaddress.IPv4Network(destination, strict=False))
    addr_info = entry.get("addr_info")
    for info in addr_info if isinstance(addr_info, list) else []:
        if isinstance(info, dict) and info.get("family") == "inet":
            found.append(
                ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            )
    return found


def _create(link: Link) -> None:
    try:
        run(["ip", "netns", "add", link.netns])
        run(
            [
                "ip",
                "link",
                "add",
                link.host_interface,
                "type",
                "veth",
                "peer",
                "name",
                GUEST_INTERFACE,
                "netns",
                link.netns,
            ]
        )
        run(["ip", "addr", "add", f"{link.host_ip}/30", "dev", link.host_interface])
        run(["ip", "link", "set", link.host_interface, "up"])
        run(["ip", "-n", link.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", link.netns, "addr", "add", f"{link.guest_ip}/30", "dev", GUEST_INTERFACE])
        run(["ip", "-n", link.netns, "link", "set", GUEST_INTERFACE, "up"])
    except CommandFailed:
        _delete(link)
        raise


def _delete(link: Link) -> None:
    # Deleting either end of a veth deletes the pair; deleting the namespace would too.
    if Path("/sys/class/net", link.host_interface).exists():
        run(["ip", "link", "del", link.host_interface])
    if link.netns_path.exists():
        run(["ip", "netns", "del", link.netns])
