"""Benchmark: build and boot time of the distro matrix's target images.

    sudo .venv/bin/python -m bench.target_images [--repeat N] [--suite bookworm]

For each image the matrix uses (plain, + cloud kernel, rpm variant): the build timings
its manifest recorded when it was built (mmdebstrap, variant step, provisioning,
packing; builds happen once and are cached), and the time from launching
`systemd-nspawn --boot` to SSH answering, over N fresh targets. Numbers are this
machine's and depend on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import statistics

from tests.targets import rpm_variant
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import PACKAGES, ImageSpec, ensure_image

_KERNEL = ("linux-image-cloud-amd64", "hyperv-daemons", "grub2-common")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--suite", default="bookworm")
    args = parser.parse_args()
    specs = {
        "plain": ImageSpec(suite=args.suite),
        "kernel": ImageSpec(suite=args.suite, packages=PACKAGES + _KERNEL),
        "rpm": ImageSpec(
            suite=args.suite,
            packages=PACKAGES + rpm_variant.PACKAGES,
            variant=rpm_variant.NAME,
        ),
    }
    for name, spec in specs.items():
        image = ensure_image(spec)
        built = json.loads(image.manifest.read_text()).get("timings", {})
        boots = []
        for _ in range(args.repeat):
            with NspawnTarget(image) as target:
                boots.append(target.ready_after or 0.0)
        print(
            f"{name:7} {image.entry.name}: build {built} "
            f"boot-to-ssh median {statistics.median(boots):.2f} s "
            f"(min {min(boots):.2f}, max {max(boots):.2f}, n={len(boots)})"
        )


if __name__ == "__main__":
    main()
