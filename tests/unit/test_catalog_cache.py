"""The catalog cache: a hit skips parsing and pydantic; any change, damage or foreign
file is a miss; a hit gives what a miss gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import catalog_cache, readlog
from agent.catalog import Catalog
from agent.safefiles import read_regular

PROFILE = """\
id: mine
description: Mine
match: {ids: [mine]}
vars: {who: nobody}
phases:
  cleanup:
    - {name: one, description: One, run: echo one}
"""

_PROBE = """
import sys
from agent.catalog import Catalog
catalog = Catalog.load()
assert catalog.get_profile("debian").phases
print("LOADED:" + " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of this test alone, the cache turned on."""
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv(catalog_cache.ENV_DISABLE, raising=False)
    return home


def _loaded_by_a_fresh_load(cache_home: Path) -> set[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    env.pop(catalog_cache.ENV_DISABLE, None)
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    (line,) = [x for x in completed.stdout.splitlines() if x.startswith("LOADED:")]
    return set(line.removeprefix("LOADED:").split())


def _user_catalog(directory: Path) -> Catalog:
    return Catalog.load(profiles_dirs=[directory], builtin=False)


def _cache_files(cache_home: Path) -> list[Path]:
    return sorted((cache_home / "imageprep").glob("catalog-*.json"))


def test_first_load_validates_with_pydantic(cache_home: Path) -> None:
    """With an empty cache the files are parsed and validated (pydantic and yaml load)."""
    assert {"pydantic", "yaml"} <= _loaded_by_a_fresh_load(cache_home)


def test_hit_imports_neither_pydantic_nor_yaml(cache_home: Path) -> None:
    """The second load of unchanged files comes from the cache: no pydantic, no PyYAML."""
    _loaded_by_a_fresh_load(cache_home)
    assert _loaded_by_a_fresh_load(cache_home).isdisjoint({"pydantic", "pydantic_core", "yaml"})


def test_hit_gives_what_a_miss_gives(cache_home: Path) -> None:
    """Every profile, playbook, origin and ancestor read back from the cache is equal."""
    missed = Catalog.load()
    assert _cache_files(cache_home)
    hit = Catalog.load()
    assert hit is not missed
    assert hit._contents == missed._contents
    assert hit.ties() == missed.ties()


def test_edited_file_is_a_miss(cache_home: Path, tmp_path: Path) -> None:
    """A file changed in place, even to the same size at once, is read again."""
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "mine.yaml").write_text(PROFILE)
    assert _user_catalog(directory).get_profile("mine").vars == {"who": "nobody"}
    (directory / "mine.yaml").write_text(PROFILE.replace("nobody", "someone"[:6] + "x"))
    assert _user_catalog(directory).get_profile("mine").vars == {"who": "someonx"}


def test_added_file_is_a_miss(cache_home: Path, tmp_path: Path) -> None:
    """A new file in a catalog directory is found although nothing read before changed."""
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "mine.yaml").write_text(PROFILE)
    assert _user_catalog(directory).profile_ids() == ["mine"]
    (directory / "other.yaml").write_text(PROFILE.replace("mine", "other"))
    assert _user_catalog(directory).profile_ids() == ["mine", "other"]


def test_removed_file_is_a_miss(cache_home: Path, tmp_path: Path) -> None:
    """A file that is gone is not served from the cache."""
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "mine.yaml").write_text(PROFILE)
    (directory / "other.yaml").write_text(PROFILE.replace("mine", "other"))
    assert _user_catalog(directory).profile_ids() == ["mine", "other"]
    (directory / "other.yaml").unlink()
    assert _user_catalog(directory).profile_ids() == ["mine"]


def test_corrupt_cache_file_is_a_miss(cache_home: Path) -> None:
    """A damaged cache file is ignored: the catalog is loaded from the files."""
    expected = Catalog.load()._contents
    (cache_file,) = _cache_files(cache_home)
    cache_file.write_bytes(b"\x00{not json")
    assert Catalog.load()._contents == expected


def test_foreign_catalog_in_cache_is_a_miss(cache_home: Path) -> None:
    """A cache file whose key matches but whose catalog has the wrong shape is ignored."""
    expected = Catalog.load()._contents
    (cache_file,) = _cache_files(cache_home)
    doc = json.loads(cache_file.read_text())
    doc["catalog"]["profiles"]["debian"]["phases"] = {"cleanup": [{"name": 5}]}
    cache_file.write_text(json.dumps(doc))
    assert Catalog.load()._contents == expected


def test_cache_of_another_version_is_a_miss(cache_home: Path) -> None:
    """A file written by another version (or other code) is not taken, even if readable."""
    expected = Catalog.load()._contents
    (cache_file,) = _cache_files(cache_home)
    doc = json.loads(cache_file.read_text())
    doc["identity"]["version"] = "0.0.0-other"
    doc["catalog"]["profiles"]["debian"]["description"] = "Poisoned"
    cache_file.write_text(json.dumps(doc))
    assert Catalog.load()._contents == expected


def test_disabled_cache_writes_nothing(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAGEPREP_NO_CACHE=1 neither reads nor writes a cache file."""
    monkeypatch.setenv(catalog_cache.ENV_DISABLE, "1")
    Catalog.load()
    assert _cache_files(cache_home) == []


def test_cache_file_is_json_not_a_pickle(cache_home: Path) -> None:
    """What is stored is plain JSON (nothing in it can run code when read)."""
    Catalog.load()
    (cache_file,) = _cache_files(cache_home)
    assert isinstance(json.loads(cache_file.read_text(encoding="utf-8")), dict)


def test_every_file_read_through_read_regular_is_recorded(tmp_path: Path) -> None:
    """A kind of file the catalog reads later (a step's script) becomes part of the key."""
    script = tmp_path / "step.sh"
    script.write_text("echo hi\n")
    with readlog.recording() as log:
        read_regular(script, 1000)
    assert log.files == {str(script.absolute()): readlog.digest(b"echo hi\n")}


def test_same_directory_spelled_otherwise_keeps_its_spelling(
    cache_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages name a file as the directory was given, hit or miss."""
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "mine.yaml").write_text(PROFILE)
    monkeypatch.chdir(tmp_path)
    assert _user_catalog(directory).profile_file("mine") == str(directory / "mine.yaml")
    assert _user_catalog(Path("p")).profile_file("mine") == "p/mine.yaml"


def test_newer_code_replaces_the_cache_file_of_older(cache_home: Path) -> None:
    """One file per set of directories: a file of another version is replaced, not kept."""
    Catalog.load()
    (cache_file,) = _cache_files(cache_home)
    doc = json.loads(cache_file.read_text())
    doc["identity"]["version"] = "0.0.0-other"
    cache_file.write_text(json.dumps(doc))
    Catalog.load()
    assert _cache_files(cache_home) == [cache_file]
    assert json.loads(cache_file.read_text())["identity"]["version"] != "0.0.0-other"
