"""imageprep: prepare a running VM to be captured as a reusable image.

Shipped as the distribution ``imageprep-agent`` (PyPI's ``imageprep`` is an unrelated
project); the command is ``imageprep`` and this import package is ``agent``.
"""

# The single source of the version: hatchling reads it at build time
# ([tool.hatch.version] in pyproject.toml), so `imageprep --version` needs no
# importlib.metadata lookup at start-up.
__version__ = "0.1.0"
