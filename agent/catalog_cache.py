"""A cache of the loaded catalog: unchanged YAML is neither parsed nor validated again.

``Catalog.load`` stores what it built as JSON in ``$XDG_CACHE_HOME/imageprep`` (else
``~/.cache/imageprep``), one file per set of directories, together with what the load
read (:mod:`agent.readlog`): a digest of every file and the names in every directory it
listed. A later load takes the stored catalog only when the file is this version's, for
the same directories, and every one of those files and listings is unchanged; anything
else (an edited, added or removed file, a damaged or foreign cache file) is a miss and
the files are loaded as usual. Rebuilding from JSON needs neither PyYAML nor pydantic.

The cache is never trusted beyond that: JSON only (no pickle), read with a size limit,
written to a temporary file and renamed into place, and every error reading or writing
it is a miss. ``IMAGEPREP_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent import __version__, readlog
from agent.safefiles import read_regular

__all__ = ["ENV_DISABLE", "cache_dir", "lookup", "store"]

#: Set to anything but "" or "0" to neither read nor write the cache.
ENV_DISABLE = "IMAGEPREP_NO_CACHE"
_FORMAT = 1
_MAX_CACHE_BYTES = 64 << 20
_MAX_SOURCE_BYTES = 64 << 20  # above any limit the catalog itself reads with
_PACKAGE = Path(__file__).resolve().parent
# In a checkout the code changes without the version: what validation and resolution
# depend on is part of the cache's identity (size and modification time of each module).
_CODE = (
    "catalog.py",
    "catalog_cache.py",
    "errors.py",
    "expressions.py",
    "limits.py",
    "readlog.py",
    "records.py",
    "safefiles.py",
    "schema.py",
    "targets.py",
    "yamlload.py",
)


def cache_dir() -> Path | None:
    """Where cache files go; None when the cache is turned off."""
    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG base directory spec: a relative XDG_CACHE_HOME is invalid and ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "imageprep"


def _identity(key: Any) -> dict[str, Any]:
    code = []
    for name in _CODE:
        try:
            info = (_PACKAGE / name).stat()
        except OSError:
            continue
        code.append([name, info.st_mtime_ns, info.st_size])
    return {"format": _FORMAT, "version": __version__, "code": code, "key": key}


def _path(directory: Path, key: Any) -> Path:
    # Named by the directories alone: another version's (or older code's) file for the
    # same directories is replaced, not kept beside; the identity inside tells them apart.
    text = json.dumps(key, sort_keys=True)
    return directory / f"catalog-{readlog.digest(text.encode())[:32]}.json"


def lookup(key: Any) -> dict[str, Any] | None:
    """The stored catalog for ``key`` (JSON-ready data) if nothing it read changed."""
    directory = cache_dir()
    if directory is None:
        return None
    identity = _identity(key)
    try:
        doc = json.loads(read_regular(_path(directory, key), _MAX_CACHE_BYTES))
    except (OSError, ValueError):  # missing, unreadable, not JSON, not UTF-8
        return None
    if not isinstance(doc, dict) or doc.get("identity") != identity:
        return None
    files, listings, catalog = doc.get("files"), doc.get("listings"), doc.get("catalog")
    if not (isinstance(files, dict) and isinstance(listings, dict) and isinstance(catalog, dict)):
        return None
    return catalog if _unchanged(files, listings) else None


def _unchanged(files: dict[str, Any], listings: dict[str, Any]) -> bool:
    for directory, names in listings.items():
        try:
            if sorted(os.listdir(directory)) != names:
                return False
        except (OSError, TypeError):
            return False
    for path, want in files.items():
        try:
            if readlog.digest(read_regular(Path(path), _MAX_SOURCE_BYTES)) != want:
                return False
        except (OSError, TypeError):
            return False
    return True


def store(key: Any, reads: readlog.ReadLog, catalog: dict[str, Any]) -> None:
    """Store ``catalog`` for ``key`` with what building it read; errors are ignored."""
    directory = cache_dir()
    if directory is None:
        return
    import tempfile  # here, not above: only a miss writes, and a hit should start fast

    identity = _identity(key)
    doc = {"identity": identity, "files": reads.files, "listings": reads.listings}
    try:
        text = json.dumps({**doc, "catalog": catalog})
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".catalog-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, _path(directory, key))  # readers see all or nothing
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except (OSError, TypeError, ValueError):
        return  # a cache that cannot be written is only a slower next start
