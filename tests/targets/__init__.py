"""Disposable Debian test targets: the cached image (rootfs.py) and booted targets (nspawn.py)."""
