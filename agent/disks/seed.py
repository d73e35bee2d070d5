"""A NoCloud seed: a small vfat image labelled CIDATA with meta-data and user-data.

cloud-init's NoCloud datasource finds it by its label on any block device. It creates one new
user with one new key and no password, and leaves everything else to the image's own
configuration (the default user is deliberately not listed, so it is not created).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.disks.tools import require, run_tool

SEED_SIZE_KIB = 1024


@dataclass(frozen=True)
class Seed:
    """What the seed asks the first boot to do, and where its files are."""

    image: Path
    instance_id: str
    hostname: str
    user: str
    private_key: Path
    public_key: str


def new_key_pair(private_key: Path) -> str:
    """Write a new ed25519 private key (OpenSSH format, 0600); return its public line."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode() + " imageprep-boot-test"


def make_seed(directory: Path) -> Seed:
    """A fresh seed in `directory`: random instance id, host name, user name and key."""
    tools = require("mkfs.vfat", "mcopy", purpose="boot-test's NoCloud seed")
    token = secrets.token_hex(4)
    seed = Seed(
        image=directory / "seed-cidata.img",
        instance_id=f"iid-imageprep-boot-test-{token}",
        hostname=f"boot-test-{token}",
        user=f"bt{token}",
        private_key=directory / "boot-test-key",
        public_key=new_key_pair(directory / "boot-test-key"),
    )
    (directory / "meta-data").write_text(
        f"instance-id: {seed.instance_id}\nlocal-hostname: {seed.hostname}\n"
    )
    (directory / "user-data").write_text(_user_data(seed))
    run_tool(
        [tools["mkfs.vfat"], "-n", "CIDATA", "-C", str(seed.image), str(SEED_SIZE_KIB)],
        timeout=60,
        what="mkfs.vfat",
    )
    run_tool(
        [
            tools["mcopy"],
            "-i",
            str(seed.image),
            str(directory / "meta-data"),
            str(directory / "user-data"),
            "::",
        ],
        timeout=60,
        what="mcopy",
    )
    return seed


def _user_data(seed: Seed) -> str:
    return (
        "#cloud-config\n"
        "# imageprep boot-test: one new user with one new key; nothing else.\n"
        "users:\n"
        f"  - name: {seed.user}\n"
        "    gecos: imageprep boot-test\n"
        "    shell: /bin/bash\n"
        "    lock_passwd: true\n"
        "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
        "    ssh_authorized_keys:\n"
        f"      - {seed.public_key}\n"
        "ssh_pwauth: false\n"
    )
