"""What goes into the target image besides packages: cloud provisioning inputs and lived-in state.

Two passes around the offline first boot (firstboot.py):
- before it, the inputs a cloud gives a new VM (overlay files, the NoCloud meta-data with the
  client public key) plus the image engineer's own `builder` account;
- after it, the traces a VM collects while someone prepares it: shell histories, a DHCP lease,
  /tmp and /var/tmp junk, a persistent-net rule, a downloaded .deb, logs, a random seed. The
  cleanup under test must remove or reset these, and tests see it in the overlay upper dir.

Host-side writes go through guest_path() (see its docstring for the two traps) and take owner
ids from the guest's own /etc/passwd. Commands that must see the guest's user database run
under `chroot`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from tests.targets.commands import run
from tests.targets.guestpath import guest_gid, guest_ids, guest_path

LOGIN_USER = "azureuser"
BUILDER_USER = "builder"
INSTANCE_ID = "iid-imageprep-golden-01"
HOSTNAME = "imageprep-golden"

# Modes that differ from 0755 (directories) / 0644 (files); git does not keep them.
_OVERLAY_MODES = {
    "etc/sudoers.d/builder": 0o440,
    "var/lib/waagent": 0o700,
    "var/lib/waagent/ovf-env.xml": 0o600,
}
_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def prepare_first_boot(
    root: Path, overlay: Path, client_public_key: str, builder_password: str
) -> None:
    """Put in the cloud's provisioning inputs and the builder account; disable the Azure agent."""
    copy_overlay(overlay, root)
    _write(root, "/var/lib/cloud/seed/nocloud/meta-data", _meta_data(client_public_key))
    _chroot(
        root,
        "useradd",
        "--create-home",
        "--shell",
        "/bin/bash",
        "--comment",
        "Image builder",
        BUILDER_USER,
    )
    # Through stdin: a password never goes on a command line.
    _chroot(root, "chpasswd", stdin=f"{BUILDER_USER}:{builder_password}\n")
    # No Azure wire server here: a running agent would only retry it and fill waagent.log.
    _chroot(root, "systemctl", "disable", "walinuxagent.service")


def add_lived_in_state(root: Path) -> None:
    """Leave the traces of a VM that has been used and prepared by hand."""
    _write(root, "/root/.bash_history", _ROOT_HISTORY, mode=0o600)
    _write(
        root, f"/home/{LOGIN_USER}/.bash_history", _LOGIN_USER_HISTORY, owner=LOGIN_USER, mode=0o600
    )
    _write(
        root,
        f"/home/{BUILDER_USER}/.bash_history",
        _BUILDER_HISTORY,
        owner=BUILDER_USER,
        mode=0o600,
    )
    _write(root, "/var/lib/dhcp/dhclient.eth0.leases", _DHCP_LEASE)
    _write(root, "/etc/udev/rules.d/70-persistent-net.rules", _PERSISTENT_NET_RULES)
    _write(
        root,
        "/tmp/imageprep-provision/bootstrap.log",
        "fetched build inputs\nok\n",
        owner=LOGIN_USER,
    )
    _write(root, "/tmp/.imageprep-lock", "4242\n")
    _write(root, "/var/tmp/imageprep-build-cache.tar", secrets.token_bytes(4096))
    _write(
        root, "/var/log/webapp/access.log", _ACCESS_LOG, owner="www-data", group="adm", mode=0o640
    )
    _write(root, "/var/log/waagent.log", _WAAGENT_LOG)
    _write(root, "/var/lib/systemd/random-seed", secrets.token_bytes(512), mode=0o600)
    _add_downloaded_package(root)


def copy_overlay(overlay: Path, root: Path) -> None:
    """Copy the overlay tree into `root`, owned by root, with the modes in _OVERLAY_MODES."""
    for source in sorted(overlay.rglob("*")):
        relative = source.relative_to(overlay).as_posix()
        destination = guest_path(root, relative, follow_last=False)
        if source.is_dir():
            if not destination.is_dir():
                destination.mkdir()
                _own(destination, 0, 0, _OVERLAY_MODES.get(relative, 0o755))
            elif relative in _OVERLAY_MODES:
                os.chmod(destination, _OVERLAY_MODES[relative])
            continue
        if destination.is_symlink():
            destination.unlink()
        destination.write_bytes(source.read_bytes())
        _own(destination, 0, 0, _OVERLAY_MODES.get(relative, 0o644))


def _meta_data(client_public_key: str) -> str:
    return (
        f"instance-id: {INSTANCE_ID}\n"
        f"local-hostname: {HOSTNAME}\n"
        "public-keys:\n"
        f"  - {client_public_key.strip()}\n"
    )


def _write(
    root: Path,
    path: str,
    content: str | bytes,
    *,
    owner: str = "root",
    group: str | None = None,
    mode: int = 0o644,
) -> None:
    destination = guest_path(root, path, follow_last=False)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.is_symlink():
        destination.unlink()
    data = content.encode() if isinstance(content, str) else content
    destination.write_bytes(data)
    uid, gid = guest_ids(root, owner)
    _own(destination, uid, guest_gid(root, group) if group else gid, mode)


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


def _chroot(root: Path, *argv: str, stdin: str | None = None) -> str:
    return run(["chroot", root, *argv], stdin=stdin, env=_CHROOT_ENV, timeout=120)


def _add_downloaded_package(root: Path) -> None:
    # A real (tiny) .deb in apt's archive cache, as `apt-get install` leaves behind.
    archive = guest_path(root, "/var/cache/apt/archives/imageprep-leftover_1.0_all.deb")
    with tempfile.TemporaryDirectory() as scratch:
        control = Path(scratch, "DEBIAN", "control")
        control.parent.mkdir()
        control.write_text(_DEB_CONTROL)
        run(["dpkg-deb", "--root-owner-group", "--build", scratch, archive])
    _own(archive, 0, 0, 0o644)


_ROOT_HISTORY = """\
apt-get update
apt-get install -y nginx
systemctl status nginx
vi /etc/nginx/sites-enabled/default
journalctl -u nginx --since today
"""

_LOGIN_USER_HISTORY = """\
sudo -i
df -h
curl -sSf http://localhost/healthz
sudo tail -n 50 /var/log/webapp/access.log
exit
"""

_BUILDER_HISTORY = """\
sudo apt-get -y upgrade
ls -la /etc/sudoers.d
sudo systemctl list-units --failed
"""

_DHCP_LEASE = """\
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option routers 10.0.0.1;
  option dhcp-lease-time 4294967295;
  option dhcp-message-type 5;
  option domain-name-servers 168.63.129.16;
  option dhcp-server-identifier 168.63.129.16;
  option domain-name "reddog.microsoft.com";
  renew 4 2038/01/14 12:00:00;
  rebind 4 2038/01/14 12:00:00;
  expire 4 2038/01/14 12:00:00;
}
"""

_PERSISTENT_NET_RULES = """\
# This file was automatically generated by the /lib/udev/write_net_rules
# program, run by the persistent-net-generator.rules rules file.

# PCI device 0x1af4:0x1000 (virtio-pci)
SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="00:0d:3a:12:34:56", \
ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"
"""

_ACCESS_LOG = """\
10.0.0.10 - - [20/May/2025:10:00:01 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "curl/7.88.1"
10.0.0.10 - - [20/May/2025:10:00:31 +0000] "GET / HTTP/1.1" 200 615 "-" "Mozilla/5.0"
"""

_WAAGENT_LOG = """\
2025-05-20T10:00:00.000000Z INFO Daemon Azure Linux Agent Version: 2.7.3.0
2025-05-20T10:00:00.100000Z INFO Daemon OS: debian 12
2025-05-20T10:00:01.000000Z INFO Daemon Provisioning already completed, skipping.
"""

_DEB_CONTROL = """\
Package: imageprep-leftover
Version: 1.0
Architecture: all
Maintainer: imageprep tests <tests@imageprep.invalid>
Description: stand-in for a package downloaded while preparing the image
"""
