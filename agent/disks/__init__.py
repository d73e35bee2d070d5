"""Disk images on this machine: read them offline, boot them under QEMU, convert them.

    tools.py     which host tools exist (qemu-system-x86_64, qemu-img, debugfs, mkfs.vfat, ...)
    image.py     `qemu-img info`: format, virtual size, backing chain, whether a VM holds it
    ext4.py      read an ext2/3/4 root filesystem inside a raw disk with debugfs (no mount)
    qemu.py      one QEMU VM: command line, accelerator choice, console, QMP, port forward
    seed.py      a NoCloud seed (vfat labelled CIDATA) with a new user and key

Nothing here imports click or the transports; agent/boottest.py and agent/vhd.py use it.
"""
