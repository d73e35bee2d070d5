"""imageprep: prepare a running VM to be captured as a reusable image."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imageprep")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"
