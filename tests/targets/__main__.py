"""Command line for humans and the demo: build the image, or run one disposable target.

    python -m tests.targets build [--suite S]   build or refresh the cached image; print where
    python -m tests.targets up [--suite S]      start a target; the FIRST stdout line is JSON
                                                (host, port, user, key_path, known_hosts_path,
                                                root, ...); runs until SIGTERM/SIGINT, then
                                                tears down; prints {"event": "stopped", ...}
                                                if the guest powers itself off meanwhile
    python -m tests.targets shell [--suite S]   interactive ssh into a fresh target
    python -m tests.targets prune               delete cached images the current sources
                                                would no longer build
Needs root. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from tests.targets.mounts import StillMounted, overlays_using, remove_tree
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import DEFAULT_SUITE, ImageSpec, TargetImage, cache_root, ensure_image


class _StopRequested(Exception):
    """SIGTERM or SIGINT arrived."""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.targets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "up", "shell"):
        command = commands.add_parser(name)
        command.add_argument("--suite", default=DEFAULT_SUITE, help="Debian suite (bookworm)")
    commands.add_parser("prune")
    args = parser.parse_args(argv)
    if args.command == "prune":
        return _prune()
    image = ensure_image(ImageSpec(suite=args.suite))
    if args.command == "build":
        return _build(image)
    if args.command == "up":
        return _up(image)
    return _shell(image)


def _build(image: TargetImage) -> int:
    print(
        json.dumps(
            {
                "entry": str(image.entry),
                "lower": str(image.lower),
                "tarball": str(image.tarball),
                "credentials": str(image.credentials.directory),
                "manifest": str(image.manifest),
            }
        ),
        flush=True,
    )
    return 0


def _up(image: TargetImage) -> int:
    _stop_on_signals()
    try:
        with NspawnTarget(image) as target:
            print(json.dumps(_describe(target)), flush=True)
            _serve_until_stopped(target)
    except _StopRequested:
        pass
    return 0


def _describe(target: NspawnTarget) -> dict[str, object]:
    return {
        "name": target.name,
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "key_path": str(target.key_path),
        "known_hosts_path": str(target.known_hosts_path),
        "root": str(target.root),
        "upper": str(target.upper),
        "console_log": str(target.console_log),
        "builder_user": target.builder_user,
        "builder_password_file": str(target.image.credentials.builder_password_file),
        "ready_after_s": round(target.ready_after or 0.0, 2),
    }


def _serve_until_stopped(target: NspawnTarget) -> None:
    # Keep the root mounted after a guest poweroff: that is when callers inspect it.
    while not target.wait_stopped(timeout=0.5):
        pass
    print(json.dumps({"event": "stopped", "exit_code": target.exit_code}), flush=True)
    while True:
        signal.pause()


def _stop_on_signals() -> None:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Ignore further signals: teardown must run to the end or it leaks mounts and links.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _StopRequested

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _shell(image: TargetImage) -> int:
    with NspawnTarget(image) as target:
        print(f"{target.name}: {target.user}@{target.host}, root {target.root}", file=sys.stderr)
        return subprocess.call(target.ssh_command())


def _prune() -> int:
    cache = cache_root()
    if not cache.is_dir():
        return 0
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for entry in sorted(cache.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and _outdated(entry):
                _remove_entry(entry)
    return 0


def _outdated(entry: Path) -> bool:
    """True for a root filesystem image today's sources would build under another key.

    The key is recomputed from the suite and package list the entry's manifest records,
    so variants (the VM kernel, the Azure-ready image) are judged by their own spec.
    Entries without such a manifest (QEMU disk images and booted states, which key on
    the root filesystem they were made from) are left alone.
    """
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        spec = ImageSpec(
            suite=manifest["suite"],
            packages=tuple(manifest["packages"]),
            hooks=tuple(manifest.get("hooks", ())),
            nspawn_env=tuple(sorted(manifest.get("nspawn_env", {}).items())),
            variant=manifest.get("variant", ""),
        )
        recorded = manifest["key"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"keeping {entry}: not a root filesystem image with a manifest", file=sys.stderr)
        return False
    return bool(recorded != spec.cache_key())


def _remove_entry(entry: Path) -> None:
    users = overlays_using(entry / "lower")
    if users:
        print(f"keeping {entry}: lower dir of running targets {users}", file=sys.stderr)
        return
    try:
        remove_tree(entry)
        print(f"removed {entry}", file=sys.stderr)
    except StillMounted as exc:
        print(f"keeping {entry}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
