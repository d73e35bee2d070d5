"""Benchmark: build and boot time of each test image (tests/targets).

    sudo .venv/bin/python -m bench.target_images [--boots N]

For every image the suite uses (Debian 12 and 13, each with and without the cloud kernel,
the Debian 12 server variant, and the rpm and Ubuntu-row variants on both) it prints the
build timings recorded in the image's manifest (mmdebstrap, first boot and provisioning,
packing; an image already in the cache is not rebuilt) and the time from launching systemd-nspawn to
SSH answering and the system being `running`, over N fresh targets. Numbers are this
machine's and depend on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import statistics

from tests.targets import rpm_variant
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import PACKAGES, ImageSpec, ensure_image
from tests.targets.variants import KERNEL_PACKAGES as KERNEL
from tests.targets.variants import TRIXIE, server_spec, trixie_spec, ubuntu_spec

IMAGES = {
    "bookworm": ImageSpec(),
    "bookworm+kernel": ImageSpec(packages=(*PACKAGES, *KERNEL)),
    TRIXIE: trixie_spec(),
    f"{TRIXIE}+kernel": trixie_spec(*KERNEL),
    "bookworm-server": server_spec(),
    "bookworm-rpm": ImageSpec(
        packages=(*PACKAGES, *rpm_variant.PACKAGES), variant=rpm_variant.NAME
    ),
    f"{TRIXIE}-rpm": ImageSpec(
        suite=TRIXIE, packages=(*PACKAGES, *rpm_variant.PACKAGES), variant=rpm_variant.NAME
    ),
    "bookworm-ubuntu": ubuntu_spec(),
    f"{TRIXIE}-ubuntu": ubuntu_spec(TRIXIE),
}


def main() -> None:
    """Print one JSON line per image."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--boots", type=int, default=3)
    args = parser.parse_args()
    for name, spec in IMAGES.items():
        image = ensure_image(spec)
        manifest = json.loads(image.manifest.read_text())
        boots = []
        for _ in range(args.boots):
            with NspawnTarget(image) as target:
                assert target.ready_after is not None
                boots.append(target.ready_after)
        print(
            json.dumps(
                {
                    "image": name,
                    "entry": image.entry.name,
                    "build_s": manifest.get("timings"),
                    "boot_to_ssh_running_s": {
                        "median": round(statistics.median(boots), 2),
                        "min": round(min(boots), 2),
                        "max": round(max(boots), 2),
                    },
                    "versions": manifest.get("versions"),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
