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
- `ubuntu_spec()`: the image the Ubuntu rows of the distribution matrix boot, on either
  base: Debian's cloud kernel and grub2-common (as every Debian-family row), Debian's
  real netplan.io (`netplan generate`, `netplan get` and its systemd generator), and an
  Ubuntu server's running services: rsyslog and NetworkManager, beside waagent unpacked
  with `dpkg --force-conflicts` as in the server variant. No auditd: Ubuntu does not
  install it by default (and it would need nspawn's seccomp filter off).
"""

from __future__ import annotations

from tests.targets.rootfs import PACKAGES, ImageSpec

TRIXIE = "trixie"
# Debian's cloud kernel (with initramfs-tools), the Hyper-V daemons the Debian profile
# installs (azure-ready then needs no network) and grub2-common (Debian's real
# update-grub and grub-mkconfig): what the distribution matrix's Debian-family rows boot.
KERNEL_PACKAGES = ("linux-image-cloud-amd64", "hyperv-daemons", "grub2-common")
# waagent's Depends (Debian 12: waagent 2.7.3.0-4.1; Debian 13: 2.12.0.2-3, whose
# `python3-legacycrypt | python3-supported-max (<< 3.13)` needs the first on Python 3.13):
# apt installs them, dpkg then unpacks waagent beside network-manager.
_WAAGENT_DEPENDS = {
    "bookworm": ("python3-distro", "python3-pkg-resources", "ca-certificates", "openssl"),
    TRIXIE: (
        "python3-distro",
        "python3-legacycrypt",
        "python3-crypt-r",
        "ca-certificates",
        "openssl",
    ),
}
_WITHOUT_WAAGENT = tuple(p for p in PACKAGES if p != "waagent")
_WAAGENT_BESIDE_NETWORK_MANAGER = (
    'chroot "$1" sh -ec "cd /tmp && apt-get download -q waagent'
    ' && dpkg --force-conflicts -i waagent_*.deb && rm -f waagent_*.deb"'
)
_NETWORK_MANAGER_LEAVES_TEST_LINK = (
    'mkdir -p "$1/etc/NetworkManager/conf.d"'
    ' && printf "[main]\\nno-auto-default=*\\n[keyfile]\\nunmanaged-devices=interface-name:tgt0\\n"'
    ' > "$1/etc/NetworkManager/conf.d/90-imageprep-test-link.conf"'
)
_SERVER_HOOKS = (
    _WAAGENT_BESIDE_NETWORK_MANAGER,
    _NETWORK_MANAGER_LEAVES_TEST_LINK,
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
        packages=(
            *_WITHOUT_WAAGENT,
            "rsyslog",
            "auditd",
            "network-manager",
            *_WAAGENT_DEPENDS[suite],
        ),
        hooks=_SERVER_HOOKS,
        nspawn_env=(("SYSTEMD_SECCOMP", "0"),),
    )


def ubuntu_spec(suite: str = "bookworm") -> ImageSpec:
    """The Ubuntu rows' image: cloud kernel, real netplan.io, rsyslog and NetworkManager."""
    return ImageSpec(
        suite=suite,
        packages=(
            *_WITHOUT_WAAGENT,
            *KERNEL_PACKAGES,
            "netplan.io",
            "rsyslog",
            "network-manager",
            *_WAAGENT_DEPENDS[suite],
        ),
        hooks=(_WAAGENT_BESIDE_NETWORK_MANAGER, _NETWORK_MANAGER_LEAVES_TEST_LINK),
    )
