"""The catalog: finding files, resolving extends, matching targets, user overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.catalog import Catalog, builtin_dir, validate_files
from agent.errors import CatalogError, SchemaError

BASE = """\
id: base
description: Base
vars: {who: nobody}
backup_paths: [/etc]
phases:
  cleanup:
    - {name: one, description: One, run: echo one}
    - {name: two, description: Two, run: echo two, timeout: 30, tags: [x]}
    - {name: three, description: Three, run: echo three}
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def catalog(tmp_path: Path, **files: str) -> Catalog:
    for name, text in files.items():
        write(tmp_path / "p", f"{name}.yaml", text)
    return Catalog.load(profiles_dirs=[tmp_path / "p"], builtin=False)


def derived(phase_entries: str, extra: str = "") -> str:
    return (
        "id: child\ndescription: Child\nextends: base\n"
        + extra
        + "phases:\n  cleanup:\n"
        + textwrap.indent(textwrap.dedent(phase_entries), "    ")
    )


def names(cat: Catalog, pid: str, phase: str = "cleanup") -> list[str]:
    return [s.name for s in cat.get_profile(pid).phases[phase]]


def test_override_merges_only_the_given_fields(tmp_path: Path) -> None:
    """An override replaces the fields it names and keeps the rest of the base step."""
    cat = catalog(tmp_path, base=BASE, child=derived("- {name: two, override: true, timeout: 99}"))
    step = cat.get_profile("child").phases["cleanup"][1]
    assert (step.name, step.timeout, step.run, step.tags) == ("two", 99, "echo two", ("x",))


def test_drop_removes_the_base_step(tmp_path: Path) -> None:
    """drop: true removes the base's step of that name."""
    cat = catalog(tmp_path, base=BASE, child=derived("- {name: two, drop: true}"))
    assert names(cat, "child") == ["one", "three"]


def test_new_steps_are_placed_before_after_or_appended(tmp_path: Path) -> None:
    """before/after position new steps; several after one anchor keep their written order."""
    entries = """\
    - {name: first, description: F, run: 'true', before: one}
    - {name: a1, description: A, run: 'true', after: one}
    - {name: a2, description: A, run: 'true', after: one}
    - {name: last, description: L, run: 'true'}
    """
    cat = catalog(tmp_path, base=BASE, child=derived(entries))
    assert names(cat, "child") == ["first", "one", "a1", "a2", "two", "three", "last"]


def test_override_of_a_missing_step_names_file_profile_and_step(tmp_path: Path) -> None:
    """Overriding a name the base lacks is an error at the entry, naming everything."""
    with pytest.raises(SchemaError) as info:
        catalog(tmp_path, base=BASE, child=derived("- {name: nope, override: true, timeout: 5}"))
    [problem] = info.value.problems
    text = str(problem)
    assert text.startswith(f"{tmp_path / 'p' / 'child.yaml'}:6:7: phases.cleanup[0]: ")
    assert 'profile "child"' in text
    assert 'step "nope"' in text
    assert 'base profile "base"' in text


def test_new_step_with_an_existing_name_asks_for_override(tmp_path: Path) -> None:
    """A full step whose name the base already has is refused: say override: true."""
    with pytest.raises(SchemaError, match="use override: true"):
        catalog(tmp_path, base=BASE, child=derived("- {name: one, description: O, run: 'true'}"))


def test_positioning_against_a_missing_step_is_an_error(tmp_path: Path) -> None:
    """before/after must name a step that exists in the base's phase."""
    with pytest.raises(SchemaError, match='placed after "ghost"'):
        catalog(
            tmp_path,
            base=BASE,
            child=derived("- {name: n, description: N, run: 'true', after: ghost}"),
        )


def test_override_that_breaks_a_rule_is_refused(tmp_path: Path) -> None:
    """Merged steps are validated again: retries on a destructive step fail at the override."""
    base = BASE.replace("run: echo three}", "run: echo three, destructive: true}")
    with pytest.raises(SchemaError, match="may not be retried"):
        catalog(tmp_path, base=base, child=derived("- {name: three, override: true, retries: 1}"))


def test_circular_extends_is_an_error_naming_files_and_ids(tmp_path: Path) -> None:
    """a -> b -> a cannot be resolved; the error shows the whole cycle."""
    with pytest.raises(CatalogError, match=r"circular extends: .*a \(.*a\.yaml\) -> b .* -> a"):
        catalog(
            tmp_path,
            a="id: a\ndescription: A\nextends: b\n",
            b="id: b\ndescription: B\nextends: a\n",
        )


def test_missing_base_is_an_error(tmp_path: Path) -> None:
    """Extending an id nobody defines names the profile, its file and the known ids."""
    with pytest.raises(
        CatalogError, match=r'"child" \(.*child\.yaml\) extends unknown profile "ghost"'
    ):
        catalog(tmp_path, child="id: child\ndescription: C\nextends: ghost\n")


def test_vars_and_backup_paths_are_inherited_and_extended(tmp_path: Path) -> None:
    """Derived vars override the base's; backup paths are the base's plus the new ones."""
    cat = catalog(
        tmp_path,
        base=BASE,
        child=derived("[]", "vars: {who: me, more: 1}\nbackup_paths: [/srv, /etc]\n"),
    )
    prof = cat.get_profile("child")
    assert prof.vars == {"who": "me", "more": 1}
    assert prof.backup_paths == ["/etc", "/srv"]
    assert prof.chain == [str(tmp_path / "p" / "child.yaml"), str(tmp_path / "p" / "base.yaml")]


def test_unknown_var_in_a_template_is_found_at_load_time(tmp_path: Path) -> None:
    """A step using a var its profile does not define fails validation, located at run."""
    with pytest.raises(SchemaError) as info:
        catalog(tmp_path, base=BASE.replace("run: echo one", "run: 'echo {{ vars.whom }}'"))
    assert str(info.value.problems[0]).endswith(
        "base.yaml:7:42: phases.cleanup[0].run: unknown var vars.whom (defined: who)"
    )


def test_unknown_fact_in_a_condition_is_found_at_load_time(tmp_path: Path) -> None:
    """A typo in a facts path is caught by validation, not on the target."""
    base = BASE.replace("run: echo one}", "run: echo one, when: facts.os.idd == 'x'}")
    with pytest.raises(SchemaError, match=r"unknown fact facts\.os\.idd"):
        catalog(tmp_path, base=base)


MATCHERS = {
    "debian": "id: debian\ndescription: D\n"
    "match: {ids: [debian], id_like: [debian], version: '>=12'}\n",
    "ubuntu": "id: ubuntu\ndescription: U\nmatch: {ids: [ubuntu], version: '>=20.04,<=24.04'}\n",
    "anyrhel": "id: anyrhel\ndescription: R\nmatch: {id_like: [rhel]}\n",
    "alma9": "id: alma9\ndescription: A\nmatch: {id_like: [rhel], version: '>=9'}\n",
}


def test_debian_12_picks_debian(tmp_path: Path) -> None:
    """ID=debian VERSION_ID=12 matches the debian profile."""
    cat = catalog(tmp_path, **MATCHERS)
    assert cat.match_profile({"ID": "debian", "VERSION_ID": "12"}).id == "debian"


def test_ubuntu_picks_ubuntu_over_debian_by_id_like(tmp_path: Path) -> None:
    """A match on ID beats one on ID_LIKE, although debian matches Ubuntu through ID_LIKE."""
    cat = catalog(tmp_path, **MATCHERS)
    os_release = {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}
    assert cat.match_profile(os_release).id == "ubuntu"


def test_version_constrained_match_beats_unconstrained(tmp_path: Path) -> None:
    """Between two ID_LIKE matches the one with a satisfied version range wins."""
    cat = catalog(tmp_path, **MATCHERS)
    assert (
        cat.match_profile(
            {"ID": "almalinux", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.4"}
        ).id
        == "alma9"
    )
    assert (
        cat.match_profile({"ID": "almalinux", "ID_LIKE": "rhel", "VERSION_ID": "8.9"}).id
        == "anyrhel"
    )


def test_facts_os_mapping_is_accepted(tmp_path: Path) -> None:
    """Lowercase keys and a list ID_LIKE (the facts["os"] shape) match the same way."""
    cat = catalog(tmp_path, **MATCHERS)
    os_facts = {"id": "ubuntu", "id_like": ["debian"], "version_id": "24.04"}
    assert cat.match_profile(os_facts).id == "ubuntu"


def test_unknown_distro_lists_profiles_and_what_the_target_said(tmp_path: Path) -> None:
    """No match: the error shows ID and VERSION_ID and every known matching profile."""
    cat = catalog(tmp_path, **MATCHERS)
    with pytest.raises(CatalogError) as info:
        cat.match_profile({"ID": "arch", "VERSION_ID": "rolling"})
    text = str(info.value)
    assert "ID=arch" in text
    assert "VERSION_ID=rolling" in text
    for pid in MATCHERS:
        assert pid in text


def test_version_outside_range_is_an_error_saying_why(tmp_path: Path) -> None:
    """Debian 11 matches debian by ID but not its version: no match, and the reason."""
    cat = catalog(tmp_path, **MATCHERS)
    with pytest.raises(
        CatalogError, match=r"debian matches by ID but VERSION_ID 11 is outside >=12"
    ):
        cat.match_profile({"ID": "debian", "VERSION_ID": "11"})


def test_equally_specific_matches_are_an_error_naming_both(tmp_path: Path) -> None:
    """Two profiles matching equally well is ambiguous, never a silent pick."""
    cat = catalog(
        tmp_path,
        one=MATCHERS["debian"],
        two=MATCHERS["debian"].replace("id: debian", "id: debian2"),
    )
    with pytest.raises(CatalogError, match=r"ambiguous: profiles debian \(.*\) and debian2"):
        cat.match_profile({"ID": "debian", "VERSION_ID": "12"})


def test_abstract_profiles_never_match(tmp_path: Path) -> None:
    """A profile without match is only a base."""
    cat = catalog(tmp_path, base=BASE)
    assert cat.get_profile("base").abstract
    with pytest.raises(CatalogError, match="no profile matches"):
        cat.match_profile({"ID": "debian", "VERSION_ID": "12"})


def test_user_dir_overrides_builtin_and_origin_says_so(tmp_path: Path) -> None:
    """A user file with a built-in id wins; the origin names it and the shadowed built-in."""
    user = write(
        tmp_path / "mine",
        "debian.yaml",
        "id: debian\ndescription: My Debian\nextends: linux-base\nmatch: {ids: [debian]}\n",
    )
    cat = Catalog.load(profiles_dirs=[tmp_path / "mine"])
    assert cat.get_profile("debian").description == "My Debian"
    origin = cat.profile_origin("debian")
    assert (origin.file, origin.path, origin.builtin) == (str(user), user, False)
    assert origin.shadowed == ("distro_profiles/debian.yaml",)
    assert cat.profile_file("ubuntu") == "distro_profiles/ubuntu.yaml"


def test_extending_the_own_id_extends_the_shadowed_definition(tmp_path: Path) -> None:
    """`extends: debian` in a user debian.yaml builds on the built-in debian."""
    write(
        tmp_path / "mine",
        "debian.yaml",
        """\
        id: debian
        description: Debian plus one step
        match: {ids: [debian], version: ">=12"}
        extends: debian
        phases:
          cleanup:
            - {name: site-cleanup, description: Site cleanup, run: 'true'}
        """,
    )
    cat = Catalog.load(profiles_dirs=[tmp_path / "mine"])
    prof = cat.get_profile("debian")
    assert prof.phases["cleanup"][-1].name == "site-cleanup"
    assert prof.step("cleanup", "apt-cache") is not None
    assert prof.chain[1:] == ["distro_profiles/debian.yaml", "distro_profiles/linux-base.yaml"]


def test_later_user_dir_wins_over_earlier(tmp_path: Path) -> None:
    """User directories layer in the order given: the last one wins."""
    for d, text in (("a", "A"), ("b", "B")):
        write(tmp_path / d, "x.yaml", f"id: x\ndescription: {text}\n")
    cat = Catalog.load(profiles_dirs=[tmp_path / "a", tmp_path / "b"], builtin=False)
    assert cat.get_profile("x").description == "B"
    assert cat.profile_origin("x").shadowed == (str(tmp_path / "a" / "x.yaml"),)


def test_same_id_twice_in_one_directory_is_an_error(tmp_path: Path) -> None:
    """Two files of one directory defining one id cannot be ordered: refuse."""
    with pytest.raises(CatalogError, match="defined twice in one directory"):
        catalog(tmp_path, one="id: x\ndescription: X\n", two="id: x\ndescription: Y\n")


def test_unknown_profile_and_playbook_list_the_known_ones(tmp_path: Path) -> None:
    """get_profile/get_playbook errors say what exists."""
    cat = Catalog.load()
    with pytest.raises(
        CatalogError,
        match=r"unknown profile nope \(known: debian, linux-base, opensuse-leap-15, "
        r"oracle-linux-8, oracle-linux-9, rhel-8, rhel-9, rhel-family, sles-15, suse-family, "
        r"ubuntu, windows-server\)",
    ):
        cat.get_profile("nope")
    with pytest.raises(
        CatalogError, match=r"unknown playbook nope \(known: azure-ready, check, generalize\)"
    ):
        cat.get_playbook("nope")


def test_builtin_dirs_are_found_from_the_checkout() -> None:
    """In a checkout the built-ins are the top-level playbooks/ and distro_profiles/."""
    assert builtin_dir("profile").name == "distro_profiles"
    assert (builtin_dir("playbook") / "generalize.yaml").is_file()


def test_validate_files_reports_problems_of_given_files(tmp_path: Path) -> None:
    """validate_files returns located problems instead of raising."""
    path = write(
        tmp_path,
        "mine.yaml",
        "id: mine\ndescription: M\nextends: debian\n"
        "phases:\n  cleanup:\n    - {name: ghost, drop: true}\n",
    )
    problems = validate_files([path])
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"{path}:6:7: phases.cleanup[0]: ")


def test_validate_files_reports_a_missing_base(tmp_path: Path) -> None:
    """An unknown base is reported for the file that names it."""
    path = write(tmp_path, "mine.yaml", "id: mine\ndescription: M\nextends: ghost\n")
    [problem] = validate_files([path])
    assert problem.file == str(path)
    assert "unknown profile" in problem.message


def test_validate_files_detects_playbooks(tmp_path: Path) -> None:
    """A playbook is recognised by its keys and validated as one."""
    path = write(
        tmp_path,
        "pb.yaml",
        "name: pb\ndescription: P\nphases: [preflight]\nrequires_backup: false\n",
    )
    assert validate_files([path]) == []
