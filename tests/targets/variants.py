"""Image variants beside the base image: Debian 13 and a "server" with rsyslog, auditd and
NetworkManager running.

- `trixie_spec()`: Debian 13 on its own packages (cloud-init 25.x with the renamed units
  and the stricter `cloud-init schema`, systemd 257, OpenSSH 10).
- `server_spec()`: Debian 12 plus the log writers most RHEL, SUSE and Ubuntu servers run
  (rsyslog with syslog.socket, auditd) and NetworkManager. Two traps, both handled here:
  * Debian 12's waagent declares `Conflicts: network-manager` (test-targets.md, "Realism"),
    so apt installs NetworkManager and waagent is unpacked beside it with
    `dpkg --force-conflicts` (its dependencies come through apt).
  * auditd in a container: the kernel does not register a container's auditd and nspawn's
    seccomp filter refuses its netlink socket. This variant boots WITHOUT nspawn's seccomp
    filter (SYSTEMD_SECCOMP=0) and with `local_events = no`: auditd then starts and writes
    its own DAEMON_START/DAEMON_END records to /var/log/audit/audit.log, which is what a
    log written after truncation needs. No QEMU VM is used for it.
  * RHEL's auditd.service has RefuseManualStop=yes (`systemctl stop auditd` is refused;
    `service auditd stop` works there); Debian's unit lacks it, so a drop-in adds it.
  NetworkManager leaves the test link alone (unmanaged), so SSH keeps its static address.
"""

from __future__ import annotations

from tests.targets.rootfs import PACKAGES, ImageSpec

TRIXIE = "trixie"
SERVER_PACKAGES = (
    *(p for p in PACKAGES if p != "waagent"),
    "rsyslog",
    "auditd",
    "network-manager",
    # waagent's dependencies (Debian 12: Depends of package waagent 2.7.3.0-4.1)
    "python3-distro",
    "python3-pkg-resources",
    "ca-certificates",
    "openssl",
)
_SERVER_HOOKS = (
    'chroot "$1" sh -ec "cd /tmp && apt-get download -q waagent'
    ' && dpkg --force-conflicts -i waagent_*.deb && rm -f waagent_*.deb"',
    'mkdir -p "$1/etc/NetworkManager/conf.d"'
    ' && printf "[main]\\nno-auto-default=*\\n[keyfile]\\nunmanaged-devices=interface-name:tgt0\\n"'
    ' > "$1/etc/NetworkManager/conf.d/90-imageprep-test-link.conf"',
    'sed -i "s/^local_events *=.*/local_events = no/" "$1/etc/audit/auditd.conf"',
    'mkdir -p "$1/etc/systemd/system/auditd.service.d"'
    ' && printf "[Unit]\\nRefuseManualStop=yes\\n"'
    ' > "$1/etc/systemd/system/auditd.service.d/imageprep-test-rhel-refuse-manual-stop.conf"',
)


def trixie_spec(*extra_packages: str) -> ImageSpec:
    """Debian 13 with the base packages (plus `extra_packages`)."""
    return ImageSpec(suite=TRIXIE, packages=(*PACKAGES, *extra_packages))


def server_spec(suite: str = "bookworm") -> ImageSpec:
    """Debian with rsyslog, auditd and NetworkManager running beside waagent and cloud-init."""
    return ImageSpec(
        suite=suite,
        packages=SERVER_PACKAGES,
        hooks=_SERVER_HOOKS,
        nspawn_env=(("SYSTEMD_SECCOMP", "0"),),
    )
