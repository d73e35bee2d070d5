#!/bin/sh
# Install the host tools the disposable test targets need (tests/targets): building the
# image (mmdebstrap), booting targets (systemd-nspawn, overlayfs via mount, nsenter),
# their private links (ip) and reaching them (ssh); VM targets and `imageprep boot-test`/`vhd`
# (qemu-system-x86, qemu-utils, e2fsprogs' debugfs, dosfstools + mtools for the seed).
# Debian's packer (1.6.6) runs the examples/packer recipe for real.
# What pip needs to build libvirt-python (gcc, pkg-config, libvirt-dev; most libvirt: backup
# tests use libvirt's in-process test driver). One test runs a real QEMU domain under a
# private libvirtd: libvirt-daemon and its QEMU driver are the binaries alone (not
# libvirt-daemon-system, whose services and default network would start on the host),
# libvirt-clients has virsh for the restore hint.
# Debian hosts; run as root. Idempotent: installs only what is missing, and runs
# `apt-get update` only if something is.
set -eu

PACKAGES="
mmdebstrap
debian-archive-keyring
systemd-container
iproute2
zstd
openssh-client
util-linux
mount
tar
dpkg
qemu-system-x86
qemu-utils
e2fsprogs
dosfstools
mtools
gcc
pkg-config
libvirt-dev
libvirt-daemon
libvirt-daemon-driver-qemu
libvirt-clients
packer
"

missing=""
for package in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
    case "$status" in
        ii*) ;;
        *) missing="$missing $package" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "host-deps: all present"
    exit 0
fi

echo "host-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing
