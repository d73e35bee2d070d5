"""Build, cache and load the Debian root filesystem every test target boots from.

Cache layout (outside the repo; IMAGEPREP_TEST_CACHE, default /var/cache/imageprep-tests):

    .lock                          flock: one process builds or extracts at a time
    <suite>-<key>/                 one complete image; appears by an atomic rename
        rootfs.tar.zst             the durable artefact (what a CI cache would keep)
        lower/                     the tree every target's overlay uses as its read-only layer
        credentials/               0700, generated at build time, never in the repo
            client_ed25519[.pub]   key pair whose public half azureuser authorizes
            builder.password       builder's random password (0600)
            ssh_host_ed25519_key.pub   the guest's ed25519 host key
            ssh_host_keys.pub      all its host keys, what known_hosts files list
        manifest.json              suite, packages, versions, build timings
        mmdebstrap.log, firstboot-console.log

<key> hashes the suite, the package list, the overlay files and this builder's own sources,
so changing any of them builds a new image next to the old one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.targets import firstboot, provision, rpm_variant
from tests.targets.commands import CommandFailed, run, run_logged
from tests.targets.guestpath import guest_path
from tests.targets.mounts import StillMounted, remove_tree

DEFAULT_SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "udev",
    "openssh-server",
    "sudo",
    "waagent",
    "cloud-init",
    "iproute2",
    "iputils-ping",
    "procps",
    "python3",
    "less",
    # cloud-init's resizefs module fails without resize2fs (test-targets.md, section (a)).
    "e2fsprogs",
)
DEFAULT_CACHE = Path("/var/cache/imageprep-tests")
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
OVERLAY_DIR = Path(__file__).with_name("overlay")
# Everything that decides the image's content; a change to any of them means a new key.
_IMAGE_SOURCES = (
    "rootfs.py",
    "provision.py",
    "firstboot.py",
    "container.py",
    "cgroups.py",
    "guestpath.py",
)
_BUILD_TOOLS = (
    "mmdebstrap",
    "systemd-nspawn",
    "nsenter",
    "ssh-keygen",
    "zstd",
    "tar",
    "dpkg-deb",
    "chroot",
)
_TAR_FLAGS = ("--numeric-owner", "--xattrs", "--xattrs-include=*")

Log = Callable[[str], None]
# Image variants by name: modules with apply(rootfs, log) and their own PACKAGES.
VARIANTS = {rpm_variant.NAME: rpm_variant}


class MissingHostTool(RuntimeError):
    """A host tool the build needs is not installed (tests/targets/host-deps.sh installs them)."""


@dataclass(frozen=True)
class ImageSpec:
    """What to build: a Debian suite and the packages on top of mmdebstrap's apt variant.

    `hooks` are extra mmdebstrap --customize-hook commands (shell, `$1` is the root),
    run before the first boot; `nspawn_env` is what every boot of the image needs in
    systemd-nspawn's environment (e.g. SYSTEMD_SECCOMP=0 for auditd).
    """

    suite: str = DEFAULT_SUITE
    packages: tuple[str, ...] = PACKAGES
    hooks: tuple[str, ...] = ()
    nspawn_env: tuple[tuple[str, str], ...] = ()
    # "" or a name in VARIANTS: a step run in the tree after mmdebstrap (rpm_variant.py).
    variant: str = ""

    def cache_key(self) -> str:
        """16 hex digits naming this spec, the overlay files and the builder's sources."""
        digest = hashlib.sha256()
        identity: list[object] = [self.suite, sorted(self.packages)]
        if self.hooks or self.nspawn_env:  # base images keep the key they had
            identity += [list(self.hooks), sorted(self.nspawn_env)]
        digest.update(json.dumps(identity).encode())
        if self.variant:
            # Only then, so the plain images keep their keys.
            digest.update(self.variant.encode() + b"\0")
            digest.update(Path(VARIANTS[self.variant].__file__ or "").read_bytes() + b"\0")
        for path in sorted(OVERLAY_DIR.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(OVERLAY_DIR).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        here = Path(__file__).parent
        for name in _IMAGE_SOURCES:
            digest.update((here / name).read_bytes() + b"\0")
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Credentials:
    """Secrets generated with one image; they only work with that image."""

    directory: Path

    @property
    def client_key(self) -> Path:
        """Private ed25519 key that logs in as azureuser (and is root's, disabled, key)."""
        return self.directory / "client_ed25519"

    @property
    def client_public_key(self) -> Path:
        """Its public half, as it was given to cloud-init in the NoCloud meta-data."""
        return self.directory / "client_ed25519.pub"

    @property
    def builder_password_file(self) -> Path:
        """File holding builder's password (one line)."""
        return self.directory / "builder.password"

    @property
    def host_public_key_file(self) -> Path:
        """The guest's ed25519 host public key, `ssh-ed25519 AAAA...`."""
        return self.directory / "ssh_host_ed25519_key.pub"

    @property
    def host_public_keys_file(self) -> Path:
        """All the guest's host public keys OpenSSH still accepts (ed25519, ecdsa, rsa)."""
        return self.directory / "ssh_host_keys.pub"


@dataclass(frozen=True)
class TargetImage:
    """A built image in the cache: its lower dir, tarball and credentials."""

    spec: ImageSpec
    entry: Path
    login_user: str = provision.LOGIN_USER
    builder_user: str = provision.BUILDER_USER
    credentials: Credentials = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "credentials", Credentials(self.entry / "credentials"))

    @property
    def lower(self) -> Path:
        """Extracted root filesystem; read-only lower layer shared by all targets."""
        return self.entry / "lower"

    @property
    def tarball(self) -> Path:
        """The cached root filesystem as tar + zstd."""
        return self.entry / "rootfs.tar.zst"

    @property
    def manifest(self) -> Path:
        """JSON describing what was built and how long it took."""
        return self.entry / "manifest.json"

    def builder_password(self) -> str:
        """builder's password."""
        return self.credentials.builder_password_file.read_text().strip()

    def host_public_key(self) -> str:
        """The guest's ed25519 host key as `type base64`."""
        return self.credentials.host_public_key_file.read_text().strip()

    def host_public_keys(self) -> list[str]:
        """Every host key the guest offers, as `type base64`, ed25519 first."""
        return self.credentials.host_public_keys_file.read_text().split("\n")[:-1]


def cache_root() -> Path:
    """Where images are cached: $IMAGEPREP_TEST_CACHE or /var/cache/imageprep-tests."""
    return Path(os.environ.get("IMAGEPREP_TEST_CACHE", str(DEFAULT_CACHE)))


def ensure_image(
    spec: ImageSpec | None = None, *, cache: Path | None = None, log: Log | None = None
) -> TargetImage:
    """The cached image for `spec`, building and/or extracting it first if needed."""
    spec = spec or ImageSpec()
    cache = cache or cache_root()
    say = log or _log_to_stderr
    image = TargetImage(spec, cache / f"{spec.suite}-{spec.cache_key()}")
    if image.lower.is_dir():
        # Complete: lower/ only ever appears by rename after everything else exists.
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache / ".lock"):
        if not image.tarball.is_file():
            _build(image, cache, say)
        if not image.lower.is_dir():
            _extract(image, say)
    return image


def _build(image: TargetImage, cache: Path, log: Log) -> None:
    _require_tools(_BUILD_TOOLS)
    _remove_abandoned_builds(cache, log)
    if image.entry.exists():
        remove_tree(image.entry)  # an entry without its tarball is unusable
    work = Path(tempfile.mkdtemp(prefix=f".build-{image.entry.name}-", dir=cache))
    try:
        timings = _build_into(image.spec, work, log)
        _write_manifest(image.spec, work, timings)
        os.rename(work, image.entry)
    except BaseException:
        _remove_quietly(work, log)
        raise
    log(f"image ready: {image.entry}")


def _build_into(spec: ImageSpec, work: Path, log: Log) -> dict[str, float]:
    credentials = _make_credentials(Credentials(work / "credentials"))
    rootfs = work / "lower"
    timings = {}
    started = time.monotonic()
    log(f"building {spec.suite} root filesystem with mmdebstrap (about 30 s)")
    run_logged(_mmdebstrap_argv(spec, rootfs, work), work / "mmdebstrap.log")
    timings["mmdebstrap_s"] = time.monotonic() - started
    if spec.variant:
        started = time.monotonic()
        VARIANTS[spec.variant].apply(rootfs, log)
        timings[f"{spec.variant}_variant_s"] = time.monotonic() - started

    started = time.monotonic()
    provision.prepare_first_boot(
        rootfs,
        OVERLAY_DIR,
        credentials.client_public_key.read_text(),
        credentials.builder_password_file.read_text().strip(),
    )
    firstboot.boot_once(rootfs, work / "firstboot-console.log", env=dict(spec.nspawn_env))
    provision.add_lived_in_state(rootfs)
    _export_host_keys(rootfs, credentials)
    timings["provision_s"] = time.monotonic() - started

    started = time.monotonic()
    _pack(rootfs, work / "rootfs.tar.zst")
    timings["pack_s"] = time.monotonic() - started
    log("built in " + ", ".join(f"{name} {value:.1f}" for name, value in timings.items()))
    return timings


def _mmdebstrap_argv(spec: ImageSpec, rootfs: Path, work: Path) -> list[str | Path]:
    return [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        "--variant=apt",
        f"--include={','.join(spec.packages)}",
        *(f"--customize-hook={hook}" for hook in spec.hooks),
        spec.suite,
        rootfs,
        _sources_for(spec.suite, work),
    ]


def _sources_for(suite: str, work: Path) -> Path:
    """The host's deb822 sources (no mirror is written into the repo), retargeted to `suite`."""
    sources = Path(os.environ.get("IMAGEPREP_TEST_SOURCES", str(HOST_SOURCES)))
    if not sources.is_file():
        raise MissingHostTool(
            f"{sources} not found: the builder uses the host's Debian mirror as mmdebstrap's "
            "MIRROR argument (set IMAGEPREP_TEST_SOURCES to another deb822 file)"
        )
    host_suite = _host_codename()
    if suite == host_suite:
        return sources
    # bookworm -> trixie also turns bookworm-updates/-security into trixie-updates/-security.
    text = re.sub(
        r"^(Suites:.*)$",
        lambda line: re.sub(rf"\b{re.escape(host_suite)}\b", suite, line.group(1)),
        sources.read_text(),
        flags=re.MULTILINE,
    )
    retargeted = work / f"{suite}.sources"
    retargeted.write_text(text)
    return retargeted


def _host_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise MissingHostTool("cannot tell the host's Debian codename from /etc/os-release")


def _make_credentials(credentials: Credentials) -> Credentials:
    credentials.directory.mkdir(mode=0o700)
    run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "imageprep-tests",
            "-f",
            credentials.client_key,
        ]
    )
    fd = os.open(credentials.builder_password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as password_file:
        password_file.write(secrets.token_urlsafe(18) + "\n")
    return credentials


def _export_host_keys(rootfs: Path, credentials: Credentials) -> None:
    # cloud-init's first boot generated them (the DSA key too, which OpenSSH 9 no longer
    # offers); every target from this image shares them.
    keys = []
    for key_type in ("ed25519", "ecdsa", "rsa"):
        public_key = guest_path(rootfs, f"/etc/ssh/ssh_host_{key_type}_key.pub").read_text()
        keys.append(" ".join(public_key.split()[:2]))  # without the root@host comment
    credentials.host_public_key_file.write_text(keys[0] + "\n")
    credentials.host_public_keys_file.write_text("".join(f"{key}\n" for key in keys))


def _pack(rootfs: Path, tarball: Path) -> None:
    partial = tarball.with_name(tarball.name + ".partial")
    _pipe(
        [
            "tar",
            *_TAR_FLAGS,
            "--one-file-system",
            "--sort=name",
            "-C",
            str(rootfs),
            "-cf",
            "-",
            ".",
        ],
        ["zstd", "-T0", "-3", "-q", "-o", str(partial)],
    )
    os.rename(partial, tarball)


def _extract(image: TargetImage, log: Log) -> None:
    _require_tools(("zstd", "tar"))
    started = time.monotonic()
    partial = Path(tempfile.mkdtemp(prefix=".lower-", dir=image.entry))
    try:
        _pipe(
            ["zstd", "-dc", "-T0", "-q", str(image.tarball)],
            ["tar", *_TAR_FLAGS, "-C", str(partial), "-xpf", "-"],
        )
        os.chmod(partial, 0o755)  # noqa: S103 - a root filesystem's / is world-readable
        os.rename(partial, image.lower)
    except BaseException:
        _remove_quietly(partial, log)
        raise
    log(f"extracted {image.tarball.name} in {time.monotonic() - started:.1f}s")


def _pipe(producer: list[str], consumer: list[str]) -> None:
    with subprocess.Popen(producer, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as first:
        second = subprocess.run(consumer, stdin=first.stdout, capture_output=True, check=False)
        if first.stdout is not None:
            first.stdout.close()
        first_stderr = first.stderr.read() if first.stderr else b""
    if first.returncode != 0:
        raise CommandFailed(producer, first.returncode, first_stderr.decode(errors="replace"))
    if second.returncode != 0:
        raise CommandFailed(consumer, second.returncode, second.stderr.decode(errors="replace"))


def _write_manifest(spec: ImageSpec, work: Path, timings: dict[str, float]) -> None:
    versions = run(
        [
            "dpkg-query",
            f"--admindir={work / 'lower' / 'var/lib/dpkg'}",
            "-W",
            "-f=${Package} ${Version}\\n",
            "systemd",
            "openssh-server",
            "sudo",
            "waagent",
            "cloud-init",
        ]
    )
    manifest = {
        "suite": spec.suite,
        "variant": spec.variant,
        "packages": list(spec.packages),
        "hooks": list(spec.hooks),
        "nspawn_env": dict(spec.nspawn_env),
        "key": spec.cache_key(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": dict(line.split(" ", 1) for line in versions.splitlines()),
        "timings": {name: round(value, 2) for name, value in timings.items()},
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _remove_abandoned_builds(cache: Path, log: Log) -> None:
    # Only called under the lock, so a .build-* directory belongs to a build that died.
    for leftover in cache.glob(".build-*"):
        _remove_quietly(leftover, log)


def _remove_quietly(path: Path, log: Log) -> None:
    try:
        remove_tree(path)
    except StillMounted as exc:
        log(f"leaving {path} in place: {exc}")


def _require_tools(tools: tuple[str, ...]) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise MissingHostTool(
            f"missing host tools: {', '.join(missing)} (run tests/targets/host-deps.sh as root)"
        )


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _log_to_stderr(message: str) -> None:
    print(f"[test-targets] {message}", file=sys.stderr, flush=True)
