"""Make a Debian target claim another distribution, with its tools: real where Debian has them.

A `Claim` is one row of the distro matrix: the os-release a target reports, the profile
that must match it, and a `prepare` hook (run on the guest's root before boot) that puts
in what that distribution would have. RHEL and SUSE rows boot the rpm image variant
(tests/targets/rpm_variant.py), where Debian's real rpm, dnf, zypper, dracut, lsinitrd
and restorecon run (wrapped by standins/record-exec so the test sees each call); tools
Debian lacks get strict stand-ins (tests/integration/standins/, in /usr/local/sbin, first
in sudo's secure_path, unless the real tool's own path matters). Also: boot files for
the image's real kernel, package and registration state. Everything is written through
guest_path(), so nothing lands on the host.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.targets.guestpath import guest_path

STANDINS = Path(__file__).with_name("standins")
CALLS_LOG = "/var/lib/imageprep-standins/calls.log"
STATE = "/var/lib/imageprep-standins"
CONSOLE = ("console=tty1", "console=ttyS0,115200n8", "earlyprintk=ttyS0,115200", "rootdelay=300")

Prepare = Callable[[Path], None]


@dataclass(frozen=True)
class Claim:
    """One matrix row: what the target claims to be and what must match it."""

    name: str
    os_release: dict[str, str]
    profile: str
    family: str  # debian | ubuntu | rhel | suse
    kernel_image: bool  # boot from the image with Debian's cloud kernel and initramfs-tools
    setup: tuple[Callable[[Path], None], ...] = field(default=())
    real: bool = False  # Debian on its own packages (its os-release is left alone)
    # The Debian base the row boots: bookworm (cloud-init 22.4, systemd 252, waagent 2.7)
    # or trixie (cloud-init 25.1, systemd 257, waagent 2.12). CLAIMS gives each row the
    # base nearest to what the claimed release ships; the matrix runs every row on both
    # (Claim.on), so both cloud-init generations meet every profile.
    suite: str = "bookworm"

    def on(self, base: str) -> Claim:
        """This row booted from `base`; a real Debian row is a claim on the other base."""
        return replace(self, suite=base, real=self.real and base == self.suite)

    @property
    def row_id(self) -> str:
        """The test id: the row and its base, e.g. `rhel-9.4-on-bookworm`."""
        return f"{self.name}-on-{self.suite}"

    @property
    def rpm_image(self) -> bool:
        """Boots from the rpm variant (tests/targets/rpm_variant.py): Debian's real rpm,
        dnf, zypper and dracut with the cloud kernel instead of stand-ins for them."""
        return self.family in ("rhel", "suse")

    def prepare(self, root: Path) -> None:
        if not self.real:
            write_os_release(root, self.os_release)
        for step in self.setup:
            step(root)


# ---------------------------------------------------------------------------- writing


def write(root: Path, path: str, content: str | bytes, mode: int = 0o644) -> Path:
    """Write guest `path` (root-owned, `mode`), replacing a symlink rather than following it."""
    dest = guest_path(root, path, follow_last=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()
    dest.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chown(dest, 0, 0)
    os.chmod(dest, mode)
    return dest


def symlink(root: Path, path: str, target: str) -> None:
    dest = guest_path(root, path, follow_last=False)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    os.symlink(target, dest)


def append(root: Path, path: str, text: str) -> None:
    dest = guest_path(root, path)
    with dest.open("a") as handle:
        handle.write(text)


def write_os_release(root: Path, fields: dict[str, str]) -> None:
    """/etc/os-release is a link to /usr/lib/os-release on Debian: write the file it names."""
    text = "".join(f'{key}="{value}"\n' for key, value in fields.items())
    dest = guest_path(root, "/etc/os-release")
    dest.write_text(text)


# Stand-ins that live where the real tool does, because something looks for that path
# (SUSEConnect refuses -d when /usr/sbin/registercloudguest exists). The rest go to
# /usr/local/sbin, first in sudo's secure_path.
_STANDIN_DIRS = {
    "registercloudguest": "/usr/sbin",
    "instance-flavor-check": "/usr/bin",
    # grub-mkconfig calls ${sbindir}/grub-probe by its path.
    "grub-probe": "/usr/sbin",
}


def install_standins(*tools: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        write(root, "/usr/local/lib/imageprep-standins/lib.sh", (STANDINS / "lib.sh").read_text())
        for tool in tools:
            where = _STANDIN_DIRS.get(tool, "/usr/local/sbin")
            write(root, f"{where}/{tool}", (STANDINS / tool).read_text(), 0o755)
        guest_path(root, STATE).mkdir(parents=True, exist_ok=True)

    return setup


def install_recorders(*tools: str) -> Callable[[Path], None]:
    """Record every call of these real programs (standins/record-exec), then run them."""

    def setup(root: Path) -> None:
        write(root, "/usr/local/lib/imageprep-standins/lib.sh", (STANDINS / "lib.sh").read_text())
        for tool in tools:
            write(root, f"/usr/local/sbin/{tool}", (STANDINS / "record-exec").read_text(), 0o755)
        guest_path(root, STATE).mkdir(parents=True, exist_ok=True)

    return setup


def installed_kernel(root: Path) -> str:
    """The version of the image's one real kernel (Debian's cloud kernel)."""
    versions = [
        d.name
        for d in guest_path(root, "/lib/modules").iterdir()
        if guest_path(root, f"/boot/vmlinuz-{d.name}").exists()
    ]
    assert len(versions) == 1, versions
    return versions[0]


def calls(root: Path) -> list[list[str]]:
    """Every recorded stand-in call, in order: [tool, arg, ...]."""
    log = guest_path(root, CALLS_LOG)
    if not log.exists():
        return []
    return [line.split("\x1f") for line in log.read_text().splitlines() if line]


# --------------------------------------------------------------------- common state


def swap_in_fstab(root: Path) -> None:
    """A swap file on the OS disk, as on-premises installs often have."""
    append(root, "/etc/fstab", "/swapfile none swap sw 0 0\n")
    write(root, "/swapfile", b"\0" * 65536, 0o600)


def agent_unit_named_waagent(root: Path) -> None:
    """RHEL's and SUSE's agent package ships waagent.service (Debian's: walinuxagent)."""
    unit = guest_path(root, "/lib/systemd/system/walinuxagent.service").read_text()
    write(root, "/usr/lib/systemd/system/waagent.service", unit)


# --------------------------------------------------------------------------- Debian


def debian_grub(root: Path) -> None:
    """Debian's /etc/default/grub and a grub.cfg (no GRUB in a container image)."""
    write(
        root,
        "/etc/default/grub",
        "# If you change this file, run 'update-grub' afterwards.\n"
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n"
        "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n"
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX="console=tty0"\n'
        "#GRUB_TERMINAL=console\n",
    )
    write(root, "/boot/grub/grub.cfg", "# grub.cfg of the installer (before azure-ready)\n")


def initramfs_without_hv(root: Path) -> None:
    """Replace every initrd.img with a valid one that lacks the Hyper-V drivers (a VM
    built on another hypervisor with MODULES=dep); azure-ready must rebuild it for real."""
    for image in guest_path(root, "/boot").glob("initrd.img-*"):
        image.write_bytes(gzip.compress(_newc([("conf/initramfs.conf", b"MODULES=dep\n")])))


def _newc(files: list[tuple[str, bytes]]) -> bytes:
    """A cpio archive in the newc format initramfs images use."""
    out = b""
    entries = [(name, data, 0o100644) for name, data in files]
    entries.append(("TRAILER!!!", b"", 0))
    for ino, (name, data, mode) in enumerate(entries, start=1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        out += header + encoded
        out += b"\0" * (-len(header + encoded) % 4)
        out += data + b"\0" * (-len(data) % 4)
    return out


def ubuntu_installer_leftovers(root: Path) -> None:
    """What subiquity leaves: a MAC-bound netplan file and cloud-init networking disabled."""
    write(
        root,
        "/etc/netplan/00-installer-config.yaml",
        "network:\n  version: 2\n  ethernets:\n    ens18:\n      match:\n"
        "        macaddress: 52:54:00:12:34:56\n      set-name: ens18\n      dhcp4: true\n",
        0o600,
    )
    write(
        root,
        "/etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg",
        "network: {config: disabled}\n",
    )
    # Ubuntu's resolv.conf is systemd-resolved's stub.
    symlink(root, "/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")


def netplan_network_manager(root: Path) -> None:
    """An Ubuntu server on NetworkManager: netplan hands every device to it (the file
    Ubuntu's desktop seed ships), and cloud-init's netplan file for the build VM's NIC,
    bound to its MAC and driver (canonical/cloud-init PR #539). The first must survive
    and still parse (netplan-config-valid), the second must go."""
    write(
        root,
        "/etc/netplan/01-network-manager-all.yaml",
        "# Let NetworkManager manage all devices on this system\n"
        "network:\n  version: 2\n  renderer: NetworkManager\n",
        0o600,
    )
    write(
        root,
        "/etc/netplan/50-cloud-init.yaml",
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
        "      match:\n        driver: hv_netvsc\n        macaddress: 00:0d:3a:12:34:56\n"
        "      set-name: eth0\n",
        0o600,
    )


def netplan_unparsable(root: Path) -> None:
    """A netplan file netplan rejects (a boolean it cannot read): at boot its generator
    would skip it and a clone would come up without that network."""
    write(
        root,
        "/etc/netplan/60-bond.yaml",
        "network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: maybe\n",
        0o600,
    )


# ----------------------------------------------------------------------- RHEL family


def rhel_boot(root: Path) -> None:
    """A BLS entry for the image's kernel and RHEL's /etc/default/grub. The initramfs is
    the one Debian's dracut names /boot/initrd.img-KVER (RHEL's: initramfs-KVER.img)."""
    kver = installed_kernel(root)
    write(
        root,
        f"/boot/loader/entries/0123456789abcdef-{kver}.conf",
        f"title Red Hat Enterprise Linux ({kver})\nversion {kver}\n"
        f"linux /vmlinuz-{kver}\ninitrd /initrd.img-{kver} $tuned_initrd\n"
        "options root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M "
        "resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rhgb quiet console=tty0\n",
    )
    write(
        root,
        "/etc/default/grub",
        "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n"
        "GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\n"
        'GRUB_TERMINAL_OUTPUT="console"\n'
        'GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M resume=/dev/mapper/rhel-swap '
        'rd.lvm.lv=rhel/root rhgb quiet"\nGRUB_DISABLE_RECOVERY="true"\n'
        "GRUB_ENABLE_BLSCFG=true\n",
    )
    write(root, "/boot/grub2/grub.cfg", "# grub.cfg of the installer\n")


def ifcfg_for_test_link(root: Path) -> None:
    """A RHEL 8 install keeps its primary NIC's profile as ifcfg-<NIC>; here the primary
    NIC is the test link tgt0. RHEL 9 rows have keyfiles only (its default), so waagent's
    set_dhcp_hostname finds no ifcfg file there (issue 10, item 1)."""
    write(
        root,
        "/etc/sysconfig/network-scripts/ifcfg-tgt0",
        "DEVICE=tgt0\nONBOOT=no\nNM_CONTROLLED=yes\n",
    )


def oracle_release(version: str) -> Callable[[Path], None]:
    """Oracle Linux ships /etc/oracle-release; waagent takes the RHEL code path only when
    it exists (azurelinuxagent/common/version.py, get_distro)."""

    def setup(root: Path) -> None:
        write(root, "/etc/oracle-release", f"Oracle Linux Server release {version}\n")

    return setup


def kernel_cmdline_file(root: Path) -> None:
    """RHEL 9 keeps the default kernel arguments in /etc/kernel/cmdline; kernel-install
    copies them into the boot entry of every kernel installed later."""
    write(
        root,
        "/etc/kernel/cmdline",
        "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M "
        "resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rhgb quiet console=tty0\n",
    )


def rhsm_registered(root: Path) -> None:
    write(root, f"{STATE}/rhsm-registered", "")
    for name in ("cert.pem", "key.pem"):
        write(root, f"/etc/pki/consumer/{name}", f"stand-in {name}\n", 0o640)
    for name in ("4093520218.pem", "4093520218-key.pem"):
        write(root, f"/etc/pki/entitlement/{name}", f"stand-in {name}\n", 0o640)


def uln_registered(root: Path) -> None:
    write(root, "/etc/sysconfig/rhn/systemid", "<?xml version='1.0'?><params/>\n", 0o600)


def nm_keyfile_pinned(root: Path) -> None:
    """A VMware-era keyfile bound to the old NIC's MAC (RHEL 9 style)."""
    write(
        root,
        "/etc/NetworkManager/system-connections/ens192.nmconnection",
        "[connection]\nid=ens192\nuuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03\ntype=ethernet\n"
        "interface-name=ens192\n\n[ethernet]\nmac-address=00:50:56:AB:CD:EF\n\n"
        "[ipv4]\nmethod=auto\n",
        0o600,
    )


def ifcfg_pinned(root: Path) -> None:
    """A VMware-era ifcfg file bound to the old NIC's MAC (RHEL 8 style)."""
    write(
        root,
        "/etc/sysconfig/network-scripts/ifcfg-ens192",
        "TYPE=Ethernet\nBOOTPROTO=dhcp\nNAME=ens192\nDEVICE=ens192\nONBOOT=yes\n"
        "HWADDR=00:50:56:AB:CD:EF\nUUID=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03\n",
    )


# What Debian lacks (stand-ins) and what the rpm variant has for real (recorded).
RHEL_TOOLS = ("grubby", "grub2-mkconfig", "selinuxenabled")
RHEL_REAL = ("rpm", "dnf", "dracut", "lsinitrd", "restorecon")


# Strict recording stand-ins for registration clients Debian lacks
# (registration_standins/): each accepts only the subcommands and options the real
# client documents (rhc(1), insights-client(8), pro(1)) and rejects anything else, as
# the real ones do; the calls go to the shared calls log.
REGISTRATION_STANDINS = Path(__file__).with_name("registration_standins")


def _registration_standin(root: Path, tool: str) -> None:
    text = (REGISTRATION_STANDINS / tool).read_text()
    write(root, f"/usr/local/sbin/{tool}", text, 0o755)


def insights_registered(root: Path) -> None:
    """A RHEL host registered with insights-client (strict stand-in)."""
    _registration_standin(root, "insights-client")
    write(root, "/etc/insights-client/.registered", "")


def rhc_connected(root: Path) -> None:
    """A RHEL host connected with rhc (RHSM and Insights at once), strict stand-ins."""
    insights_registered(root)
    _registration_standin(root, "rhc")
    write(root, f"{STATE}/rhc-connected", "")


def lvm_devices_file(root: Path) -> None:
    """RHEL 9's LVM devices file naming the build VM's disk."""
    write(
        root,
        "/etc/lvm/devices/system.devices",
        "# LVM uses devices listed in this file.\nVERSION=1.1.3\n"
        "IDTYPE=sys_wwid IDNAME=naa.6000c29d4f1a2b3c4d5e6f7a8b9c0d1e DEVNAME=/dev/sda2 "
        "PVID=x PART=2\n",
    )


def pro_attached(root: Path) -> None:
    """An Ubuntu host attached to Ubuntu Pro, with a strict stand-in for `pro`."""
    _registration_standin(root, "pro")
    write(root, "/var/lib/ubuntu-advantage/private/machine-token.json", "{}\n", 0o600)


# ----------------------------------------------------------------------- SUSE family


def suse_boot() -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        write(
            root,
            "/etc/default/grub",
            "GRUB_DISTRIBUTOR=\nGRUB_DEFAULT=saved\nGRUB_TIMEOUT=8\n"
            'GRUB_CMDLINE_LINUX_DEFAULT="splash=silent resume=/dev/disk/by-uuid/1b7c quiet '
            'mitigations=auto"\nGRUB_CMDLINE_LINUX=""\nGRUB_TERMINAL="gfxterm"\n',
        )
        write(root, "/boot/grub2/grub.cfg", "# grub.cfg of the installer\n")
        write(
            root,
            "/etc/sysconfig/network/ifcfg-eth0",
            "BOOTPROTO='dhcp'\nSTARTMODE='auto'\nLLADDR='00:15:5d:01:02:03'\n",
        )
        write(
            root,
            "/etc/sysconfig/network/dhcp",
            '## Type: yesno\nDHCLIENT_SET_HOSTNAME="yes"\nDHCLIENT_SET_DEFAULT_ROUTE="yes"\n',
        )
        # SUSE's /etc/sudoers asks for root's password and lets every user try.
        # (Before the includedir, as in SUSE's file: cloud-init's NOPASSWD rule still wins.)
        sudoers = guest_path(root, "/etc/sudoers")
        text = sudoers.read_text()
        at = text.index("@includedir")
        sudoers.write_text(text[:at] + "Defaults targetpw\nALL ALL=(ALL) ALL\n" + text[at:])
        # netconfig manages resolv.conf as a link into /run.
        symlink(root, "/etc/resolv.conf", "/run/netconfig/resolv.conf")

    return setup


def _product(root: Path, name: str, version: str) -> None:
    write(
        root,
        f"/etc/products.d/{name}.prod",
        f'<?xml version="1.0" encoding="UTF-8"?>\n<product schemeversion="0">\n'
        f"  <vendor>SUSE</vendor>\n  <name>{name}</name>\n  <version>{version}</version>\n"
        "  <release>0</release>\n  <arch>x86_64</arch>\n</product>\n",
    )


def sles_products(root: Path) -> None:
    """/etc/products.d as an SLES 15 SP5 install with the Public Cloud Module has it."""
    _product(root, "SLES", "15.5")
    _product(root, "sle-module-public-cloud", "15.5")
    symlink(root, "/etc/products.d/baseproduct", "SLES.prod")


def scc_registered(*activated: str) -> Callable[[Path], None]:
    """Registered with SCC (SUSEConnect -r), with these products activated."""

    def setup(root: Path) -> None:
        write(root, "/etc/zypp/credentials.d/SCCcredentials", "username=SCC_x\npassword=y\n", 0o600)
        write(root, "/etc/zypp/services.d/SUSE_Linux_Enterprise_Server_15_SP5_x86_64.service", "")
        write(root, f"{STATE}/scc-activations", "".join(f"{p} 15.5 x86_64\n" for p in activated))

    return setup


def flavor(answer: str) -> Callable[[Path], None]:
    """What instance-flavor-check answers: PAYG, BYOS or unknown."""

    def setup(root: Path) -> None:
        write(root, f"{STATE}/instance-flavor", answer)

    return setup


def payg_registered(root: Path) -> None:
    """A pay-as-you-go instance as registercloudguest leaves it: credentials for SUSE's
    update server, its service, and the server pinned in /etc/hosts."""
    write(root, "/etc/zypp/credentials.d/SCCcredentials", "username=SCC_y\npassword=z\n", 0o600)
    write(root, "/etc/zypp/services.d/Public_Cloud_Module_15_SP5_x86_64.service", "")
    activations = "SLES 15.5 x86_64\nsle-module-public-cloud 15.5 x86_64\n"
    write(root, f"{STATE}/scc-activations", activations)
    append(
        root,
        "/etc/hosts",
        "# Added by SMT registration do not remove, retain comment as well\n"
        "192.0.2.10\tsmt-azure.susecloud.net\tsmt-azure\n",
    )
    write(root, "/var/cache/cloudregister/currentSMTInfo.obj", b"stand-in")


SUSE_TOOLS = ("mkinitrd", "grub2-mkconfig")
SUSE_REAL = ("rpm", "zypper", "dracut", "lsinitrd")


# ----------------------------------------------------------------------------- matrix


def _os(id_: str, version: str, like: str = "", name: str = "") -> dict[str, str]:
    fields = {"NAME": name or id_, "ID": id_, "VERSION_ID": version}
    if like:
        fields["ID_LIKE"] = like
    fields["PRETTY_NAME"] = f"{name or id_} {version}"
    return fields


# Debian's real update-grub and grub-mkconfig (grub2-common in the kernel image), with a
# stand-in for the grub-probe they call, which cannot resolve a container's overlay root.
_DEBIAN_COMMON = (
    install_standins("grub-probe"),
    install_recorders("update-grub"),
    debian_grub,
    swap_in_fstab,
)
# Ubuntu rows boot the Ubuntu variant (tests/targets/variants.py): Debian's real
# netplan.io (recorded), rsyslog and NetworkManager running.
_UBUNTU = (
    install_standins("grub-probe", "apt-get"),
    install_recorders("update-grub", "netplan"),
    debian_grub,
    swap_in_fstab,
    ubuntu_installer_leftovers,
    netplan_network_manager,
)
_EL9K = "5.14.0-427.13.1.el9_4.x86_64"
_EL8K = "4.18.0-553.el8_10.x86_64"
_UEK = "5.15.0-200.131.27.el9uek.x86_64"


def _rhel(
    kver: str, *extra: Callable[[Path], None], tools: tuple[str, ...] = ()
) -> tuple[Callable[[Path], None], ...]:
    # kver: the claimed distribution's kernel, for the record; the target boots files
    # of Debian's cloud kernel (dracut needs real modules).
    del kver
    return (
        install_standins(*RHEL_TOOLS, *tools),
        install_recorders(*RHEL_REAL),
        agent_unit_named_waagent,
        rhel_boot,
        initramfs_without_hv,
        swap_in_fstab,
        *extra,
    )


def _suse(
    *extra: Callable[[Path], None], tools: tuple[str, ...] = ()
) -> tuple[Callable[[Path], None], ...]:
    return (
        install_standins(*SUSE_TOOLS, *tools),
        install_recorders(*SUSE_REAL),
        agent_unit_named_waagent,
        suse_boot(),
        initramfs_without_hv,
        swap_in_fstab,
        *extra,
    )


BASES = ("bookworm", "trixie")

CLAIMS = (
    Claim(
        "debian-12",
        _os("debian", "12", name="Debian GNU/Linux"),
        "debian",
        "debian",
        True,
        (*_DEBIAN_COMMON, initramfs_without_hv),
        real=True,
    ),
    Claim(
        "debian-11",
        _os("debian", "11", name="Debian GNU/Linux"),
        "debian",
        "debian",
        True,
        _DEBIAN_COMMON,
    ),
    Claim(
        "debian-13",
        _os("debian", "13", name="Debian GNU/Linux"),
        "debian",
        "debian",
        True,
        (*_DEBIAN_COMMON, initramfs_without_hv),
        real=True,
        suite="trixie",
    ),
    Claim(
        "ubuntu-20.04",
        _os("ubuntu", "20.04", "debian", "Ubuntu"),
        "ubuntu",
        "ubuntu",
        True,
        _UBUNTU,
    ),
    Claim(
        "ubuntu-22.04",
        _os("ubuntu", "22.04", "debian", "Ubuntu"),
        "ubuntu",
        "ubuntu",
        True,
        _UBUNTU,
    ),
    Claim(
        "ubuntu-24.04",
        _os("ubuntu", "24.04", "debian", "Ubuntu"),
        "ubuntu",
        "ubuntu",
        True,
        (*_UBUNTU, pro_attached),
        suite="trixie",
    ),
    Claim(
        "rhel-8.10",
        _os("rhel", "8.10", "fedora", "Red Hat Enterprise Linux"),
        "rhel-8",
        "rhel",
        False,
        _rhel(
            _EL8K,
            ifcfg_pinned,
            ifcfg_for_test_link,
            insights_registered,
            rhsm_registered,
            tools=("subscription-manager",),
        ),
    ),
    Claim(
        "rhel-9.4",
        _os("rhel", "9.4", "fedora", "Red Hat Enterprise Linux"),
        "rhel-9",
        "rhel",
        False,
        _rhel(
            _EL9K,
            nm_keyfile_pinned,
            kernel_cmdline_file,
            lvm_devices_file,
            rhc_connected,
            rhsm_registered,
            tools=("subscription-manager",),
        ),
        suite="trixie",
    ),
    Claim(
        "centos-stream-9",
        _os("centos", "9", "rhel fedora", "CentOS Stream"),
        "rhel-9",
        "rhel",
        False,
        _rhel(_EL9K, nm_keyfile_pinned, kernel_cmdline_file),
        suite="trixie",
    ),
    Claim(
        "ol-8.9",
        _os("ol", "8.9", "fedora", "Oracle Linux Server"),
        "oracle-linux-8",
        "rhel",
        False,
        _rhel(_EL8K, ifcfg_pinned, ifcfg_for_test_link, oracle_release("8.9"), uln_registered),
    ),
    Claim(
        "ol-9.3",
        _os("ol", "9.3", "fedora", "Oracle Linux Server"),
        "oracle-linux-9",
        "rhel",
        False,
        _rhel(_UEK, nm_keyfile_pinned, kernel_cmdline_file, oracle_release("9.3"), uln_registered),
        suite="trixie",
    ),
    Claim(
        "sles-15.5",  # BYOS, registered with SUSEConnect
        _os("sles", "15.5", "suse", "SLES"),
        "sles-15",
        "suse",
        False,
        _suse(
            sles_products,
            scc_registered("SLES", "sle-module-public-cloud"),
            flavor("BYOS"),
            tools=("SUSEConnect", "instance-flavor-check"),
        ),
    ),
    Claim(
        "sles-15.5-payg",
        _os("sles", "15.5", "suse", "SLES"),
        "sles-15",
        "suse",
        False,
        _suse(
            sles_products,
            payg_registered,
            flavor("PAYG"),
            tools=("SUSEConnect", "registercloudguest", "instance-flavor-check"),
        ),
    ),
    Claim(
        "opensuse-leap-15.5",
        _os("opensuse-leap", "15.5", "suse opensuse", "openSUSE Leap"),
        "opensuse-leap-15",
        "suse",
        False,
        _suse(),
    ),
)

# SLES registered, but without the Public Cloud Module that python-azure-agent comes from.
SLES_WITHOUT_PUBLIC_CLOUD_MODULE = Claim(
    "sles-15.5-no-public-cloud-module",
    _os("sles", "15.5", "suse", "SLES"),
    "sles-15",
    "suse",
    False,
    _suse(sles_products, scc_registered("SLES"), tools=("SUSEConnect",)),
)

# BYOS, registered with SUSEConnect, but with SUSE's cloud client installed (as SUSE's
# BYOS cloud images have it): SUSEConnect refuses -d there, registercloudguest cleans.
SLES_BYOS_WITH_CLOUD_CLIENT = Claim(
    "sles-15.5-byos-cloud-client",
    _os("sles", "15.5", "suse", "SLES"),
    "sles-15",
    "suse",
    False,
    _suse(
        sles_products,
        scc_registered("SLES", "sle-module-public-cloud"),
        flavor("BYOS"),
        tools=("SUSEConnect", "registercloudguest", "instance-flavor-check"),
    ),
)

# instance-flavor-check says pay-as-you-go, but nothing can deregister it.
SLES_PAYG_WITHOUT_CLOUD_CLIENT = Claim(
    "sles-15.5-payg-no-cloud-client",
    _os("sles", "15.5", "suse", "SLES"),
    "sles-15",
    "suse",
    False,
    _suse(sles_products, payg_registered, flavor("PAYG"), tools=("instance-flavor-check",)),
)

# Ubuntu 22.04 with a netplan file netplan cannot parse: azure-ready's verification fails.
UBUNTU_UNPARSABLE_NETPLAN = Claim(
    "ubuntu-22.04-unparsable-netplan",
    _os("ubuntu", "22.04", "debian", "Ubuntu"),
    "ubuntu",
    "ubuntu",
    True,
    (*_UBUNTU, netplan_unparsable),
)
