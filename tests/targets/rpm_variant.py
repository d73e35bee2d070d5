"""The `rpm` image variant: Debian's own rpm, dnf, zypper and dracut in a target image.

The RHEL and SUSE rows of the distribution matrix run the real programs wherever Debian
ships them (rpm 4.18, dnf 4.14, zypper 1.14, dracut 059 with lsinitrd, policycoreutils'
restorecon; Debian 12's archive). dracut conflicts with initramfs-tools, so this is an
image of its own: the base packages plus Debian's cloud kernel and these tools, built by
rootfs.py like any other spec (ImageSpec(variant="rpm")) and cached under its own key.
Only the ImageSpec's suite picks the Debian release, so a Debian 13 base gets the same
variant.

Real rpm, dnf and zypper need an rpm database and a repository. At image build time
(offline: nothing but apt reaches the network) `rpmbuild` builds tiny noarch packages
that stand for the distributions' WALinuxAgent, python-azure-agent, cloud-init and the
rest (no files, only a name, a version and what they provide), `createrepo_c` makes a
local rpm-md repository of them in /srv/imageprep-rpms, dnf and zypper are pointed at it,
and the ones a fresh install has (cloud-init, gdisk) go into the rpm database with a
real `rpm --install`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.targets.commands import run
from tests.targets.guestpath import guest_path

NAME = "rpm"
PACKAGES = (
    "linux-image-cloud-amd64",
    "hyperv-daemons",
    "dracut",
    "cpio",
    "rpm",
    "dnf",
    "zypper",
    "createrepo-c",
    # restorecon; SELinux itself cannot be enabled in a container, so it relabels nothing.
    "policycoreutils",
)
REPO = "/srv/imageprep-rpms"
_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}

Log = Callable[[str], None]


@dataclass(frozen=True)
class RpmPackage:
    """A package that stands for a distribution's package of the same name."""

    name: str
    version: str
    release: str
    installed: bool = False  # in the rpm database from the start (a fresh install has it)
    provides: tuple[str, ...] = ()


STAND_INS = (
    RpmPackage("cloud-init", "23.4", "7.el9", installed=True),
    RpmPackage("gdisk", "1.0.7", "5.el9", installed=True),
    RpmPackage("WALinuxAgent", "2.9.1.1", "1.el9"),
    RpmPackage("python-azure-agent", "2.9.1.1", "150100.3.1"),
    RpmPackage("cloud-utils-growpart", "0.33", "1.el9"),
    RpmPackage("hyperv-daemons", "0", "0.42.20190303git.el9"),
)

_DNF_REPO = f"""[imageprep-rpms]
name=imageprep test packages (stand-ins for WALinuxAgent, cloud-init, ...)
baseurl=file://{REPO}
enabled=1
gpgcheck=0
"""
_ZYPP_REPO = f"""[imageprep-rpms]
name=imageprep test packages (stand-ins for python-azure-agent, cloud-init, ...)
enabled=1
autorefresh=1
baseurl=dir://{REPO}
type=rpm-md
gpgcheck=0
"""
# RHEL's and SUSE's dracut build host-only images (their 01-dist.conf), so an image
# made elsewhere lacks the Hyper-V drivers until azure-ready adds them. For the tests'
# speed the image holds only dracut's `base` module, uncompressed: 4 s instead of 55 s
# per `dracut --regenerate-all` here; add_drivers still go in, which is what is tested.
_DRACUT_DIST = (
    'hostonly="yes"\nhostonly_cmdline="no"\n'
    "# imageprep tests: small and fast, see tests/targets/rpm_variant.py\n"
    'dracutmodules=" base "\ncompress="cat"\n'
)


def apply(rootfs: Path, log: Log) -> None:
    """Build the stand-in packages and the repository inside `rootfs`; install the base ones."""
    log(f"rpm variant: building {len(STAND_INS)} stand-in rpms and the local repository")
    # Debian's rpm keeps its database in the caller's home (%_dbpath ~/.rpmdb); RHEL's
    # and SUSE's in /var/lib/rpm, where libzypp looks (it passes --dbpath /var/lib/rpm).
    _write(rootfs, "/etc/rpm/macros.dbpath", "%_dbpath /var/lib/rpm\n")
    top = guest_path(rootfs, "/root/rpmbuild")
    specs = top / "SPECS"
    specs.mkdir(parents=True, exist_ok=True)
    for package in STAND_INS:
        (specs / f"{package.name}.spec").write_text(_spec(package))
        _chroot(
            rootfs,
            "rpmbuild",
            "--quiet",
            "-bb",
            "--define",
            "_topdir /root/rpmbuild",
            f"/root/rpmbuild/SPECS/{package.name}.spec",
        )
    repo = guest_path(rootfs, REPO)
    repo.mkdir(parents=True, exist_ok=True)
    for built in (top / "RPMS" / "noarch").glob("*.rpm"):
        built.rename(repo / built.name)
    _chroot(rootfs, "rm", "-rf", "/root/rpmbuild")
    _chroot(rootfs, "createrepo_c", "--quiet", REPO)
    installed = [
        f"{REPO}/{p.name}-{p.version}-{p.release}.noarch.rpm" for p in STAND_INS if p.installed
    ]
    # Debian 12's rpm refuses to install packages unless told it is wanted
    # (--force-debian); Debian 13's no longer has that patch, nor the option.
    force = ["--force-debian"] if "--force-debian" in _chroot(rootfs, "rpm", "--help") else []
    _chroot(rootfs, "rpm", "--install", "--nodeps", *force, *installed)
    _write(rootfs, "/etc/yum.repos.d/imageprep-rpms.repo", _DNF_REPO)
    _write(rootfs, "/etc/zypp/repos.d/imageprep-rpms.repo", _ZYPP_REPO)
    _write(rootfs, "/usr/lib/dracut/dracut.conf.d/01-dist.conf", _DRACUT_DIST)


def _spec(package: RpmPackage) -> str:
    provides = "".join(f"Provides: {p}\n" for p in package.provides)
    return (
        f"Name: {package.name}\nVersion: {package.version}\nRelease: {package.release}\n"
        f"Summary: imageprep test stand-in for {package.name}\nLicense: MIT\n"
        f"BuildArch: noarch\n{provides}\n"
        f"%description\nStands for the distribution's {package.name} in imageprep's tests;"
        " it installs no files.\n\n%files\n"
    )


def _write(rootfs: Path, path: str, text: str) -> None:
    dest = guest_path(rootfs, path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


def _chroot(rootfs: Path, *argv: str) -> str:
    return run(["chroot", str(rootfs), *argv], env=_CHROOT_ENV)
