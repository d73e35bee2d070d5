"""The `when:` language and `{{ }}` templates: what is allowed, what is refused."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from agent.errors import ValidationError
from agent.expressions import (
    check_expression,
    check_references,
    evaluate,
    expression_references,
    parse_version,
    render,
    template_references,
)

FACTS: dict[str, Any] = {
    "os": {"id": "debian", "id_like": [], "version_id": "12", "version_codename": "bookworm"},
    "tools": {"waagent": True, "cloud_init": True, "sudo": True, "systemd": True},
    "cloud_init_version": "22.4.2",
    "waagent_version": None,
    "ovf_user": "azureuser",
    "is_root": False,
}
VARS: dict[str, Any] = {"deprovision_user": "", "min_free_mib": 200, "names": ["a", "b c"]}


def when(expr: str) -> bool:
    return evaluate(expr, FACTS, VARS)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("facts.os.id == 'debian'", True),
        ("facts.os.id != 'debian'", False),
        ("facts.tools.waagent and facts.tools.systemd", True),
        ("not facts.is_root", True),
        ("facts.is_root or vars.min_free_mib > 100", True),
        ("facts.os.id in ['debian', 'ubuntu']", True),
        ("'debian' not in facts.os.id_like", True),
        ("vars.min_free_mib >= 200 and vars.min_free_mib < 300", True),
        ("100 < vars.min_free_mib <= 200", True),
        ("vars.deprovision_user == '' or vars.deprovision_user == facts.ovf_user", True),
        ("facts.waagent_version == None", True),
        ("facts.cloud_init_version", True),
    ],
)
def test_allowed_operations_evaluate(expr: str, expected: bool) -> None:
    """Boolean logic, comparisons, membership, constants and lists work as in Python."""
    assert when(expr) is expected


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("__import__('os').system('id')", "only the function version"),
        ("len(facts.os)", "only the function version"),
        ("facts.os['id'] == 'debian'", "subscripts"),
        ("facts.__class__", "names starting with _"),
        ("facts.os.id.__len__", "names starting with _"),
        ("(lambda: 1)()", "lambda"),
        ("vars.min_free_mib + 1 > 2", "arithmetic"),
        ("[x for x in vars.names]", "comprehensions"),
        ("os.system", "unknown name 'os'"),
        ("facts.os.id.upper() == 'X'", "only the function version"),
        ("'abc'.upper", "dotted access only"),
        ("version(facts.os.version_id, 2)", "exactly one argument"),
        ("facts.is_root is True", "'is'"),
        ("x := 1", "syntax error"),
        ("", "empty expression"),
    ],
)
def test_forbidden_syntax_is_refused_naming_the_expression(expr: str, why: str) -> None:
    """Anything outside the whitelist fails the syntax check with the expression quoted."""
    with pytest.raises(ValidationError) as info:
        check_expression(expr)
    assert why in str(info.value)
    assert repr(expr) in str(info.value)


def test_version_compares_numerically_not_as_text() -> None:
    """22.10 > 22.4 and 12 == 12.0; strings and ints compare to a version directly."""
    assert parse_version("22.10") > parse_version("22.4")
    assert parse_version("12") == parse_version("12.0")
    assert when("version(facts.cloud_init_version) < '23.4'")
    assert when("version(facts.cloud_init_version) >= version('22.4.2')")
    assert when("version(facts.os.version_id) >= 12")
    assert not when("version(facts.os.version_id) > '12.0'")


def test_version_ignores_distro_suffixes() -> None:
    """Only the leading numeric part counts: 23.1-0ubuntu1~22.04.1 is 23.1."""
    assert parse_version("23.1-0ubuntu1~22.04.1") == parse_version("23.1")


def test_version_of_null_is_an_error_telling_how_to_guard() -> None:
    """version(None) raises instead of comparing silently; `x and version(x)` guards it."""
    with pytest.raises(
        ValidationError, match=r"version\(facts.waagent_version\): the value is null"
    ):
        when("version(facts.waagent_version) >= '2.9'")
    assert not when("facts.waagent_version and version(facts.waagent_version) >= '2.9'")


def test_version_of_text_without_digits_is_an_error() -> None:
    """A value that is not a version at all is reported, not guessed."""
    with pytest.raises(ValidationError, match="not a version"):
        when("version(facts.os.id) > '1'")


def test_unknown_key_is_an_error_listing_the_known_keys() -> None:
    """A missing fact or var fails loudly with what exists."""
    with pytest.raises(ValidationError, match=r"facts.os has no key 'idd' \(known: .*id, id_like"):
        when("facts.os.idd == 'debian'")


def test_ordering_unrelated_types_is_an_error() -> None:
    """Comparing a string with a number is a mistake in the profile, reported as such."""
    with pytest.raises(ValidationError, match="cannot order"):
        when("facts.os.version_id > 11")


def test_references_are_the_longest_dotted_paths() -> None:
    """expression_references lists what a condition reads, for load-time checks."""
    refs = expression_references(
        "facts.tools.cloud_init and version(facts.cloud_init_version) >= '23.4'"
    )
    assert refs == {"facts.tools.cloud_init", "facts.cloud_init_version"}


def test_check_references_finds_unknown_vars_and_facts() -> None:
    """Unknown vars and facts paths are reported; known ones pass."""
    problems = check_references(
        ["vars.min_free_mib", "vars.nope", "facts.os.id", "facts.tools.dnf", "facts"],
        ["min_free_mib"],
    )
    assert problems == [
        "facts alone is not a value; use facts.<name>",
        "unknown fact facts.tools.dnf (facts.tools has no 'dnf')",
        "unknown var vars.nope (defined: min_free_mib)",
    ]


def test_render_substitutes_dotted_paths() -> None:
    """{{ vars.x }} and {{ facts.a.b }} are replaced by their values."""
    out = render("need={{ vars.min_free_mib }} id={{facts.os.id}}", FACTS, VARS)
    assert out == "need=200 id=debian"


def test_render_unknown_var_is_an_error() -> None:
    """A placeholder naming nothing fails instead of rendering an empty string."""
    with pytest.raises(
        ValidationError, match=r"template '\{\{ vars.nope \}\}': vars has no key 'nope'"
    ):
        render("echo {{ vars.nope }}", FACTS, VARS)


def test_render_leaves_shell_syntax_alone() -> None:
    """${SHELL_VARS}, $(...), awk braces and single braces are not templates."""
    text = "echo ${HOME} $(id -u) ${x:-{}} | awk '{ print $1 }' {{ vars.min_free_mib }}"
    assert render(text, FACTS, VARS) == text.replace("{{ vars.min_free_mib }}", "200")


def test_render_refuses_expressions_in_placeholders() -> None:
    """Only dotted paths: filters, calls and arithmetic are refused."""
    for bad in (
        "{{ vars.x | upper }}",
        "{{ vars.x + 1 }}",
        "{{ version(facts.os.id) }}",
        "{{ vars.__class__ }}",
    ):
        with pytest.raises(ValidationError, match="only dotted paths"):
            template_references(bad)


def test_render_with_quote_makes_each_value_one_shell_word() -> None:
    """With shlex.quote a value can never change the shape of the command."""
    variables = {**VARS, "deprovision_user": "x; rm -rf /"}
    out = render("user={{ vars.deprovision_user }}", FACTS, variables, quote=shlex.quote)
    assert out == "user='x; rm -rf /'"
    assert render("for f in {{ vars.names }}", FACTS, VARS, quote=shlex.quote) == "for f in a 'b c'"


def test_render_null_and_booleans() -> None:
    """None renders empty (quoted: ''), booleans as true/false."""
    facts = {**FACTS, "ovf_user": None}
    assert render("[{{ facts.ovf_user }}]", facts, VARS) == "[]"
    assert render("u={{ facts.ovf_user }}", facts, VARS, quote=shlex.quote) == "u=''"
    assert render("{{ facts.tools.sudo }}", FACTS, VARS) == "true"
