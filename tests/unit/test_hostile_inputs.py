"""The hostile-input corpus: bad YAML, schema errors, `when:` abuse, bad URLs and flags,
forged journals and misbehaving peers, each judged by tests/unit/hostile_harness.py.

Every case is a bad input an attacker or a careless user could hand the CLI. Each must
end with its documented exit code and one clear line, without a traceback, within a
bounded time, writing what it should, and without its secrets anywhere. Peers listen on
127.0.0.1 only (tests/unit/hostile_peers.py).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.outcome import ExitCode
from tests.unit import hostile_peers as peers
from tests.unit.hostile_harness import (
    Case,
    Ctx,
    final_result,
    nothing_written,
    run_case,
    run_folder_unchanged,
)
from tests.unit.test_resume_cli import BACKUP, make_run

USAGE = int(ExitCode.USAGE)
CONNECT = int(ExitCode.CONNECTION_FAILED)
BACKUP_FAILED = int(ExitCode.BACKUP_FAILED)

# -- building blocks -------------------------------------------------------------------------

PROFILE = """\
id: hostile
description: A profile under test
match: {ids: [hostile-never-matches]}
vars:
  x: 1
  name: demo
phases:
  preflight:
    - name: probe
      description: Probe
      run: "true"
"""


def profile_with(**replace: str) -> str:
    """PROFILE with lines replaced: ``vars="..."`` swaps the vars block, etc."""
    text = PROFILE
    if "vars" in replace:
        text = text.replace("vars:\n  x: 1\n  name: demo\n", replace["vars"])
    if "step" in replace:
        text = text.replace('      run: "true"\n', '      run: "true"\n' + replace["step"])
    if "head" in replace:
        text = replace["head"] + text
    return text


def step(field: str) -> str:
    """Extra lines for the probe step (indented under it)."""
    return textwrap.indent(field, "      ")


def when(expr: str) -> str:
    return step(f"when: {json.dumps(expr)}\n")


def validate_text(text: str | bytes, name: str = "hostile.yaml") -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        return ["validate", str(ctx.file(name, text))]

    return build


def yaml_case(
    case_id: str, text: str | bytes, names: str = r"hostile\.yaml:\d+:\d+: ", **kw: object
) -> Case:
    """`imageprep validate FILE`: the problem line and the count line, exit 2."""
    return Case(case_id, validate_text(text), USAGE, names, lines=2, written=nothing_written, **kw)  # type: ignore[arg-type]


def nested(opening: str, closing: str, depth: int, inner: str = "1") -> str:
    return opening * depth + inner + closing * depth


LAUGHS = "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)

# -- YAML that is malformed or hostile ---------------------------------------------------------

YAML_CASES = [
    yaml_case("deep-flow-seq", profile_with(vars="vars:\n  x: " + nested("[", "]", 1000) + "\n")),
    yaml_case(
        "deep-flow-map", profile_with(vars="vars:\n  x: " + nested("{a: ", "}", 1000) + "\n")
    ),
    yaml_case(
        "deep-flow-seq-300", profile_with(vars="vars:\n  x: " + nested("[", "]", 300) + "\n")
    ),
    yaml_case("deep-flow-51", profile_with(vars="vars:\n  x: " + nested("[", "]", 51) + "\n")),
    yaml_case(
        "deep-block",
        "id: hostile\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(80)) + f"{'  ' * 80}v\n",
    ),
    yaml_case("deep-block-seq", "".join(f"{'  ' * i}- \n" for i in range(200)) + "x: 1\n"),
    yaml_case(
        "billion-laughs-seq",
        profile_with(vars="vars:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" + LAUGHS),
        names=r"hostile\.yaml:\d+:\d+: YAML error: more than 100000 values",
    ),
    yaml_case(
        "billion-laughs-map",
        profile_with(
            vars="vars:\n  a: &a {k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x}\n"
            + "".join(
                f"  {chr(98 + i)}: &{chr(98 + i)} {{"
                + ", ".join(f"k{j}: *{chr(97 + i)}" for j in range(9))
                + "}\n"
                for i in range(8)
            )
        ),
        names=r"YAML error: more than 100000 values",
    ),
    yaml_case(
        "laughs-in-steps",
        "id: hostile\ndescription: d\nmatch: {ids: [h]}\nx0: &a ["
        + ", ".join(["s"] * 50)
        + "]\n"
        + "".join(
            f"x{i}: &a{i} [" + ", ".join([f"*{'a' if i == 1 else f'a{i - 1}'}"] * 50) + "]\n"
            for i in range(1, 5)
        ),
        names=r"YAML error: more than 100000 values",
    ),
    yaml_case(
        "recursive-alias-seq", profile_with(vars="vars:\n  x: &a [1, *a]\n"), names=r"recursive"
    ),
    yaml_case(
        "recursive-alias-map", profile_with(vars="vars:\n  x: &a {y: *a}\n"), names=r"recursive"
    ),
    yaml_case("recursive-merge", "a: &a\n  b: 1\n  <<: *a\n", names=r"recursive"),
    yaml_case(
        "undefined-alias", profile_with(vars="vars:\n  x: *nope\n"), names=r"undefined alias"
    ),
    yaml_case(
        "int-5000-var",
        profile_with(vars="vars:\n  x: " + "9" * 5000 + "\n"),
        names=r"hostile\.yaml:\d+:\d+: YAML error: an integer of 5000 characters",
    ),
    yaml_case("int-5000-timeout", profile_with(step=step("timeout: " + "9" * 5000 + "\n"))),
    yaml_case("int-5000-negative", profile_with(step=step("retries: -" + "9" * 5000 + "\n"))),
    yaml_case("int-5000-hex", profile_with(vars="vars:\n  x: 0x" + "f" * 5000 + "\n")),
    yaml_case("int-5000-description", PROFILE.replace("A profile under test", "9" * 5000)),
    yaml_case("int-5000-key", profile_with(vars="vars:\n  " + "9" * 5000 + ": 1\n")),
    yaml_case(
        "int-101", profile_with(step=step("timeout: " + "1" * 101 + "\n")), names=r"101 char"
    ),
    yaml_case("float-huge", profile_with(step=step("timeout: 1e999999\n"))),
    yaml_case(
        "tab-indent",
        PROFILE.replace("  x: 1", "\tx: 1"),
        names=r"hostile\.yaml:\d+:\d+: YAML error",
    ),
    yaml_case("unclosed-bracket", PROFILE.replace("[hostile-never-matches]", "[hostile")),
    yaml_case("unclosed-quote", PROFILE.replace('run: "true"', 'run: "true')),
    yaml_case("duplicate-key", PROFILE + "id: again\n", names=r'duplicate key "id"'),
    yaml_case(
        "duplicate-step-key",
        profile_with(step=step('run: "false"\n')),
        names=r'duplicate key "run"',
    ),
    yaml_case("two-documents", PROFILE + "---\n" + PROFILE, names=r"YAML error"),
    yaml_case(
        "python-tag", profile_with(vars="vars:\n  x: !!python/object/apply:os.system [id]\n")
    ),
    yaml_case("unknown-tag", profile_with(vars="vars:\n  x: !evil 1\n")),
    yaml_case("bad-binary", profile_with(vars="vars:\n  x: !!binary '@@@'\n")),
    yaml_case("bad-timestamp", profile_with(vars="vars:\n  x: !!timestamp nope\n")),
    yaml_case("top-level-list", "- 1\n- 2\n", names=r"expected a mapping"),
    yaml_case("top-level-scalar", "just text\n", names=r"expected a mapping"),
    yaml_case("empty-file", "", names=r"hostile\.yaml:1:1: the file is empty"),
    yaml_case("only-comments", "# nothing here\n", names=r"the file is empty"),
    yaml_case("nul-byte", PROFILE.replace("Probe", "Pro\x00be"), names=r"YAML error"),
    yaml_case("control-char", PROFILE.replace("Probe", "Pro\x07be"), names=r"YAML error"),
    yaml_case("not-utf8", PROFILE.encode() + b"# \xff\xfe\n", names=r"hostile\.yaml: not UTF-8"),
    yaml_case("utf16", PROFILE.encode("utf-16"), names=r"hostile\.yaml: not UTF-8"),
    yaml_case(
        "two-mib",
        PROFILE + "# " + "a" * (2 << 20) + "\n",
        names=r"hostile\.yaml: cannot read: \d+ bytes, more than the 1048576",
    ),
    yaml_case("long-line-key", profile_with(vars="vars:\n  " + "k" * 2000 + ": 1\n")),
    yaml_case("neither-profile-nor-playbook", "foo: 1\n", names=r"cannot tell a profile"),
    yaml_case("anchor-on-key", profile_with(vars="vars:\n  &k x: 1\n  *k : 2\n")),
    yaml_case("complex-key", profile_with(vars="vars:\n  ? [a, b]\n  : 1\n")),
    yaml_case(
        "escape-sequence-in-key",
        profile_with(vars='vars:\n  "\\e[2J\\e]0;owned\\a": 1\n'),
        names=r"vars\.\\x1b\[2J\\x1b\]0;owned\\x07: ",
    ),
    yaml_case(
        "line-separators-in-key",
        profile_with(vars='vars:\n  "a\\Lb\\Nc\\x1dd": 1\n'),
        names=r"vars\.a\\u2028b\\x85c\\x1dd: ",
    ),
    yaml_case("null-key", profile_with(vars="vars:\n  ~: 1\n")),
]


def special_file_case(case_id: str, make: Callable[[Path], None], names: str) -> Case:
    def build(ctx: Ctx) -> list[str]:
        path = ctx.root / "hostile.yaml"
        make(path)
        return ["validate", str(path)]

    return Case(case_id, build, USAGE, names, lines=2, written=nothing_written)


SPECIAL_FILE_CASES = [
    special_file_case(
        "fifo-profile", os.mkfifo, r"hostile\.yaml: cannot read: not a regular file \(a FIFO\)"
    ),
    special_file_case(
        "dev-zero-profile",
        lambda p: p.symlink_to("/dev/zero"),
        r"hostile\.yaml: cannot read: not a regular file \(a device\)",
    ),
    special_file_case(
        "dangling-symlink",
        lambda p: p.symlink_to(p.parent / "nowhere"),
        r"hostile\.yaml: cannot read: No such file",
    ),
]


# -- schema errors -------------------------------------------------------------------------------


def schema_case(case_id: str, text: str, names: str) -> Case:
    return yaml_case(case_id, text, names=rf"hostile\.yaml:\d+:\d+: .*(?:{names})")


SCHEMA_CASES = [
    schema_case(
        "unknown-field", profile_with(step=step("tiemout: 5\n")), r'unknown field "tiemout"'
    ),
    yaml_case(
        "missing-id", PROFILE.replace("id: hostile\n", "name2: x\n"), names=r"cannot tell a profile"
    ),
    schema_case(
        "missing-description",
        PROFILE.replace("description: A profile under test\n", ""),
        r'missing required field "description"',
    ),
    schema_case(
        "missing-run", PROFILE.replace('      run: "true"\n', ""), r'missing required field "run"'
    ),
    schema_case(
        "bad-slug",
        PROFILE.replace("name: probe", "name: Probe Step"),
        r"phases\.preflight\[0\]\.name",
    ),
    schema_case("timeout-word", profile_with(step=step("timeout: fast\n")), r"timeout: expected"),
    schema_case("timeout-negative", profile_with(step=step("timeout: -5\n")), r"timeout"),
    schema_case("timeout-zero", profile_with(step=step("timeout: 0\n")), r"timeout"),
    schema_case("timeout-list", profile_with(step=step("timeout: [1]\n")), r"timeout"),
    schema_case(
        "exit-code-300", profile_with(step=step("ok_exit_codes: [300]\n")), r"ok_exit_codes"
    ),
    schema_case("exit-code-str", profile_with(step=step("ok_exit_codes: '0'\n")), r"ok_exit_codes"),
    schema_case(
        "on-failure-bogus", profile_with(step=step("on_failure: explode\n")), r"on_failure"
    ),
    schema_case("become-string", profile_with(step=step("become: yes please\n")), r"become"),
    schema_case(
        "retries-destructive", profile_with(step=step("destructive: true\nretries: 3\n")), r"retr"
    ),
    schema_case(
        "run-empty", PROFILE.replace('run: "true"', 'run: "  "'), r"run: expected a shell script"
    ),
    schema_case("run-mapping", PROFILE.replace('run: "true"', "run: {a: 1}"), r"run"),
    schema_case(
        "template-expression",
        PROFILE.replace('run: "true"', 'run: "echo {{ vars.x + 1 }}"'),
        r"placeholder",
    ),
    schema_case(
        "template-dunder",
        PROFILE.replace('run: "true"', 'run: "echo {{ vars.__class__ }}"'),
        r"placeholder",
    ),
    schema_case(
        "template-unknown-var",
        PROFILE.replace('run: "true"', 'run: "echo {{ vars.nope }}"'),
        r"unknown var vars\.nope",
    ),
    schema_case(
        "template-unknown-fact",
        PROFILE.replace('run: "true"', 'run: "echo {{ facts.nope }}"'),
        r"unknown fact",
    ),
    schema_case("var-uppercase", profile_with(vars="vars:\n  BadName: 1\n"), r"var name"),
    schema_case(
        "var-mapping",
        profile_with(vars="vars:\n  x: {a: 1}\n"),
        r"vars\.x: expected a string.*got a mapping",
    ),
    schema_case("var-null", profile_with(vars="vars:\n  x: ~\n"), r"got null"),
    schema_case("var-float", profile_with(vars="vars:\n  x: 1.5\n"), r"got 1\.5"),
    schema_case(
        "var-list-of-lists", profile_with(vars="vars:\n  x: [[1, 2], [3]]\n"), r"got a list of 2"
    ),
    schema_case(
        "var-long-list",
        profile_with(vars="vars:\n  x: [" + ", ".join(["[1]"] * 5000) + "]\n"),
        r"got a list of 5000 item\(s\)$",
    ),
    schema_case("vars-list", profile_with(vars="vars: [1, 2]\n"), r"vars"),
    schema_case(
        "version-range-bad",
        PROFILE.replace("{ids: [hostile-never-matches]}", "{ids: [h], version: 'newest'}"),
        r"version range",
    ),
    schema_case(
        "version-range-huge",
        PROFILE.replace(
            "{ids: [hostile-never-matches]}", "{ids: [h], version: '>=" + "9" * 5000 + "'}"
        ),
        r"match\.version",
    ),
    schema_case(
        "backup-path-relative", PROFILE + "backup_paths: [etc/ssh]\n", r"expected an absolute path"
    ),
    schema_case(
        "backup-path-dotdot", PROFILE + "backup_paths: [/etc/../root]\n", r"without '\.\.'"
    ),
    schema_case(
        "backup-path-long",
        PROFILE + "backup_paths: [" + "x" * 5000 + "]\n",
        r"got 'x{50,}\.\.\. \(5000 characters\)'$",
    ),
    schema_case(
        "description-period",
        PROFILE.replace("A profile under test", "Ends with a period."),
        r"description",
    ),
    schema_case(
        "description-multiline",
        PROFILE.replace("description: A profile under test", "description: |\n  two\n  lines"),
        r"one-line",
    ),
    schema_case(
        "phases-list",
        PROFILE.replace("phases:\n  preflight:", "phases:\n  - preflight:"),
        r"phases",
    ),
    schema_case(
        "steps-mapping",
        PROFILE.replace(
            '    - name: probe\n      description: Probe\n      run: "true"\n', "    name: probe\n"
        ),
        r"preflight",
    ),
    schema_case("backup-phase", PROFILE.replace("  preflight:", "  backup:"), r"backup"),
    schema_case(
        "duplicate-step",
        PROFILE + "    - name: probe\n      description: Again\n      run: 'true'\n",
        r"duplicate step name",
    ),
    schema_case(
        "override-without-extends",
        profile_with(step=step("override: true\n")),
        r"only a profile that extends",
    ),
    schema_case(
        "match-ids-str",
        PROFILE.replace("{ids: [hostile-never-matches]}", "{ids: debian}"),
        r"match\.ids",
    ),
    schema_case(
        "playbook-requires-backup-str",
        "name: hostile\ndescription: P\nphases: [preflight]\nrequires_backup: 'yes'\n",
        r"requires_backup",
    ),
    schema_case(
        "playbook-phases-int",
        "name: hostile\ndescription: P\nphases: 5\nrequires_backup: false\n",
        r"phases",
    ),
    schema_case(
        "playbook-bad-phase",
        "name: hostile\ndescription: P\nphases: [Pre Flight]\nrequires_backup: false\n",
        r"phases",
    ),
]


# -- `when:` conditions --------------------------------------------------------------------------


def when_case(case_id: str, expr: str, names: str) -> Case:
    return yaml_case(
        case_id,
        profile_with(step=when(expr)),
        names=rf"hostile\.yaml:\d+:\d+: phases\.preflight\[0\]\.when: .*(?:{names})",
    )


WHEN_CASES = [
    when_case("when-int-5000", "vars.x == " + "9" * 5000, r"longer than 2000 characters"),
    when_case("when-not-3000", "not " * 3000 + "vars.x", r"longer than 2000"),
    when_case("when-not-400", "not " * 400 + "vars.x", r"nested deeper than 50 levels"),
    when_case("when-parens-300", nested("(", ")", 300, "vars.x"), r"syntax error|nested"),
    when_case("when-lists-100", "vars.x in " + nested("[", "]", 100), r"nested deeper than 50"),
    when_case("when-compare-chain", " < ".join(["vars.x"] * 500), r"longer than 2000"),
    when_case("when-lambda", "(lambda: 1)()", r"lambda not allowed|only the function"),
    when_case("when-dunder", "vars.__class__", r"names starting with _"),
    when_case("when-subscript", "vars['x']", r"subscripts"),
    when_case("when-call", "open('/etc/passwd')", r"only the function version"),
    when_case("when-import", "__import__('os')", r"only the function version|unknown name"),
    when_case("when-walrus", "(y := 1)", r"assignment"),
    when_case("when-comprehension", "[c for c in vars]", r"comprehensions"),
    when_case("when-arith", "vars.x + 1 > 2", r"arithmetic"),
    when_case("when-syntax", "vars.x ==", r"syntax error"),
    when_case("when-empty", "   ", r"empty expression"),
    when_case("when-unknown-name", "os.system", r"unknown name 'os'"),
    when_case("when-bytes", "b'x' == vars.name", r"constant"),
    when_case("when-version-args", "version(vars.x, 2)", r"exactly one argument"),
    when_case("when-unknown-var", "vars.nope == 1", r"unknown var"),
    when_case("when-unknown-fact", "facts.os.nope == 'x'", r"unknown fact"),
    when_case("when-lines", "vars.x ==\n\n\n1", r"syntax error|."),
]


def plan_case(case_id: str, expr: str, names: str) -> Case:
    """A `when:` that validates but cannot be evaluated: `plan` names the step."""

    def build(ctx: Ctx) -> list[str]:
        ctx.file("profiles/hostile.yaml", profile_with(step=when(expr)))
        profiles = str(ctx.root / "profiles")
        return ["plan", "--profiles-dir", profiles, "--profile", "hostile", "--playbook", "check"]

    names = rf"^imageprep: error: step preflight/probe: when: .*(?:{names})"
    return Case(case_id, build, USAGE, names, written=nothing_written)


PLAN_CASES = [
    plan_case("plan-when-order-mismatch", "vars.name < 1", r"cannot order the string 'demo'"),
    plan_case("plan-when-in-number", "vars.x in vars.x", r"'in' needs a list or string"),
    plan_case("plan-when-version-word", "version(vars.name) > '1'", r"not a version: 'demo'"),
    plan_case("plan-when-version-bool", "version(vars.x == 1) > '1'", r"expected a string"),
    plan_case(
        "plan-when-int-vs-huge", "vars.x < " + "9" * 1900 + " and vars.name < 1", r"cannot order"
    ),
]


# -- target URLs ----------------------------------------------------------------------------------


def url_case(case_id: str, url: Callable[[Ctx], str] | str, names: str) -> Case:
    def build(ctx: Ctx) -> list[str]:
        target = url(ctx) if callable(url) else url
        return ["check", "--target", target, "--run-dir", str(ctx.run_dir), *ctx.password_env()]

    return Case(
        case_id, build, USAGE, rf"^imageprep: error: .*(?:{names})", written=nothing_written
    )


def with_password(scheme: str) -> Callable[[Ctx], str]:
    def url(ctx: Ctx) -> str:
        from urllib.parse import quote

        return f"{scheme}://u:{quote(ctx.secret, safe='')}@127.0.0.1:22"

    return url


URL_CASES = [
    url_case("ipv6-unclosed", "ssh://u@[::1", r"--target: not a valid URL"),
    url_case("ipv6-unclosed-port", "ssh://u@[::1:22", r"--target: not a valid URL"),
    url_case("ipv6-garbage", "ssh://u@[zz]:22", r"--target: not a valid URL|invalid"),
    url_case("ipv6-port-range", "ssh://u@[::1]:99999", r"port must be a number from 1 to 65535"),
    url_case("port-letters", "ssh://u@h:abc", r"port must be a number from 1 to 65535"),
    url_case("port-huge", "ssh://u@h:" + "9" * 5000, r"port must be a number|not a valid URL"),
    url_case("port-negative", "ssh://u@h:-1", r"port must be a number from 1 to 65535"),
    url_case("no-user", "ssh://127.0.0.1", r"no user"),
    url_case("empty-user", "ssh://@127.0.0.1", r"no user"),
    url_case("no-host", "ssh://u@", r"no host"),
    url_case("with-path", "ssh://u@h/etc", r"unexpected path"),
    url_case("with-query", "ssh://u@h?x=1", r"unexpected path or query"),
    url_case("with-fragment", "ssh://u@h#frag", r"unexpected path or query"),
    url_case("unknown-scheme", "telnet://u@h", r"unknown scheme"),
    url_case("no-scheme", "u@h", r"unknown scheme"),
    url_case("empty-url", "", r"--target URL is required"),
    url_case("ssh-password", with_password("ssh"), r"a password in the URL is refused"),
    url_case("winrm-password", with_password("winrm+https"), r"a password in the URL is refused"),
]


# -- flags --------------------------------------------------------------------------------


def flag_case(case_id: str, build: Callable[[Ctx], list[str]], names: str) -> Case:
    return Case(
        case_id, build, USAGE, rf"^imageprep: error: .*(?:{names})", written=nothing_written
    )


def check_with(*flags: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        return ["check", "--target", "ssh://u@127.0.0.1:9", "--run-dir", str(ctx.run_dir), *flags]

    return build


def password_file(content: bytes) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        path = ctx.file("pw.txt", content.replace(b"SECRET", ctx.secret.encode()))
        return check_with("--password-file", str(path))(ctx)

    return build


def identity(key_type: str, *, locked: bool, give: str | None = None) -> Callable[[Ctx], list[str]]:
    """An OpenSSH key made by ssh-keygen, with the case's secret as its passphrase."""

    def build(ctx: Ctx) -> list[str]:
        import subprocess

        key = ctx.root / f"id_{key_type}"
        secret = ctx.secret if locked else ""
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", secret, "-f", str(key)],
            check=True,
            capture_output=True,
        )
        flags = ["--identity", str(key)]
        if give == "env-wrong":
            ctx.env["HOSTILE_PP"] = "wrong-" + ctx.secret
            flags += ["--identity-passphrase-env", "HOSTILE_PP"]
        return check_with(*flags)(ctx)

    return build


FLAG_CASES = [
    flag_case(
        "password-env-unset",
        check_with("--password-env", "HOSTILE_UNSET"),
        r"--password-env: environment variable HOSTILE_UNSET is not set",
    ),
    flag_case(
        "password-env-and-file",
        lambda c: check_with("--password-env", "A", "--password-file", str(c.file("p", "x")))(c),
        r"not both",
    ),
    flag_case(
        "password-file-missing",
        check_with("--password-file", "/nonexistent/pw"),
        r"--password-file: cannot read /nonexistent/pw",
    ),
    flag_case(
        "password-file-not-utf8",
        password_file(b"SECRET\xff\xfe\n"),
        r"--password-file: .*pw\.txt is not UTF-8 text",
    ),
    flag_case("password-file-latin1", password_file(b"caf\xe9-SECRET"), r"is not UTF-8 text"),
    flag_case("password-file-empty", password_file(b""), r"--password-file: .*pw\.txt is empty"),
    flag_case(
        "password-file-huge", password_file(b"SECRET" + b"x" * 70_000), r"longer than 65536 bytes"
    ),
    flag_case(
        "sudo-password-file-not-utf8",
        lambda c: check_with("--sudo-password-file", str(c.file("s", c.secret.encode() + b"\x80")))(
            c
        ),
        r"--sudo-password-file: .* not UTF-8",
    ),
    flag_case(
        "identity-missing",
        check_with("--identity", "/nonexistent/id"),
        r"--identity /nonexistent/id: no such file",
    ),
    flag_case(
        "identity-garbage",
        lambda c: check_with("--identity", str(c.file("id", "not a key\n")))(c),
        r"--identity .*id is not a usable private key",
    ),
    flag_case(
        "identity-binary",
        lambda c: check_with("--identity", str(c.file("id", b"\xff\x00" * 100)))(c),
        r"--identity .* not a usable private key",
    ),
    flag_case(
        "identity-public-key",
        lambda c: check_with(
            "--identity",
            str(c.file("id.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFrZQ== a@b\n")),
        )(c),
        r"not a usable private key",
    ),
    flag_case(
        "identity-ed25519-locked",
        identity("ed25519", locked=True),
        r"--identity .*id_ed25519 is passphrase-protected",
    ),
    flag_case(
        "identity-rsa-locked",
        identity("rsa", locked=True),
        r"--identity .*id_rsa is passphrase-protected",
    ),
    flag_case("identity-ecdsa-locked", identity("ecdsa", locked=True), r"is passphrase-protected"),
    flag_case(
        "identity-wrong-passphrase",
        identity("ed25519", locked=True, give="env-wrong"),
        r"the passphrase given does not decrypt it",
    ),
    flag_case(
        "identity-passphrase-alone",
        lambda c: (
            c.env.update(HOSTILE_PP=c.secret),
            check_with("--identity-passphrase-env", "HOSTILE_PP")(c),
        )[1],
        r"goes with --identity",
    ),
    flag_case(
        "identity-passphrase-unset",
        lambda c: check_with(
            "--identity", str(c.file("id", "x")), "--identity-passphrase-env", "HOSTILE_NOPE"
        )(c),
        r"--identity-passphrase-env: environment variable HOSTILE_NOPE is not set",
    ),
    flag_case("unknown-option", check_with("--bogus"), r"No such option '--bogus'"),
    flag_case("bad-choice", check_with("--host-key-policy", "yolo"), r"--host-key-policy"),
    flag_case("connect-timeout-zero", check_with("--connect-timeout", "0"), r"--connect-timeout"),
    flag_case(
        "connect-timeout-word", check_with("--connect-timeout", "soon"), r"--connect-timeout"
    ),
    flag_case("connect-timeout-nan", check_with("--connect-timeout", "nan"), r"--connect-timeout"),
    flag_case(
        "password-file-dir",
        lambda c: check_with("--password-file", str(c.root))(c),
        r"--password-file",
    ),
    flag_case(
        "var-no-equals", check_with("--var", "novalue"), r"--var 'novalue': expected KEY=VALUE"
    ),
    flag_case(
        "winrm-flag-on-ssh",
        check_with("--winrm-transport", "basic"),
        r"--winrm-transport is for winrm",
    ),
    flag_case("log-format-bad", check_with("--log-format", "xml"), r"--log-format"),
    flag_case(
        "flag-value-escape-sequence",
        check_with("--log-format", "x\x1b[2J\x1b]0;owned\x07"),
        r"'x\\x1b\[2J\\x1b\]0;owned\\x07' is not one of",
    ),
    flag_case("missing-argument", lambda c: ["boot-test"], r"Missing argument 'DISK'"),
    flag_case("no-such-command", lambda c: ["explode"], r"No such command 'explode'"),
    flag_case(
        "reason-without-no-backup",
        lambda c: ["run", "--target", "ssh://u@127.0.0.1:9", "--reason", "x"],
        r"--reason goes with --no-backup",
    ),
    flag_case(
        "no-backup-without-reason",
        lambda c: ["run", "--target", "ssh://u@127.0.0.1:9", "--no-backup"],
        r"--no-backup needs --reason",
    ),
    flag_case(
        "boot-test-disk-alone",
        lambda c: ["run", "--target", "ssh://u@127.0.0.1:9", "--boot-test-disk", "/x"],
        r"--boot-test-disk goes with --boot-test",
    ),
    flag_case(
        "profiles-dir-missing",
        lambda c: ["validate", "--profiles-dir", str(c.root / "nope")],
        r"nope",
    ),
    Case(
        "validate-missing-file",
        lambda c: ["validate", str(c.root / "nope.yaml")],
        USAGE,
        r"nope\.yaml: cannot read: No such file",
        lines=2,
    ),
    flag_case("plan-auto-without-target", lambda c: ["plan"], r"--profile auto needs --target"),
    flag_case("plan-unknown-profile", lambda c: ["plan", "--profile", "nope"], r"nope"),
    flag_case(
        "plan-unknown-playbook",
        lambda c: ["plan", "--profile", "debian", "--playbook", "nope"],
        r"nope",
    ),
    flag_case("profiles-show-unknown", lambda c: ["profiles", "show", "nope" * 1000], r"nope"),
]


def boot_test_unwritable(ctx: Ctx) -> list[str]:
    disk = ctx.file("disk.img", b"\0" * 4096)
    blocker = ctx.file("blocker", "a file, not a folder")
    return ["boot-test", str(disk), "--run-dir", str(blocker / "run"), "--log-format", "text"]


FLAG_CASES.append(
    Case(
        "boot-test-run-dir-unwritable",
        boot_test_unwritable,
        USAGE,
        r"^imageprep: error: run folder .*blocker/run",
    )
)


# -- forged journals ---------------------------------------------------------------------------


def forged(
    header: Callable[[dict[str, object], Path], dict[str, object]] | None = None,
    lines: Callable[[list[str]], list[str]] | None = None,
) -> Callable[[Ctx], list[str]]:
    """A real run folder (test_resume_cli.make_run) whose journal was then edited."""

    def build(ctx: Ctx) -> list[str]:
        run_dir = make_run(ctx.root, BACKUP)
        assert run_dir == ctx.run_dir
        journal = run_dir / "journal.jsonl"
        text = journal.read_text().splitlines()
        first = json.loads(text[0])
        # A closed local port, never make_run's TEST-NET address: should a refusal regress
        # into a resume, it fails here instead of reaching for the network.
        first["target"] = f"ssh://azureuser@127.0.0.1:{peers.closed_port()}"
        if header is not None:
            first = header(first, ctx.root)
        rest = text[1:] if lines is None else lines(text[1:])
        journal.write_text("\n".join([json.dumps(first), *rest]) + "\n")
        return ["run", "--resume", str(run_dir), "--log-format", "text", *ctx.password_env()]

    return build


def without(*keys: str) -> Callable[[dict[str, object], Path], dict[str, object]]:
    def edit(header: dict[str, object], root: Path) -> dict[str, object]:
        header = json.loads(json.dumps(header))
        node: dict[str, object] = header
        for key in keys[:-1]:
            node = node[key]  # type: ignore[assignment]
        node.pop(keys[-1])
        return header

    return edit


def setting(
    path: tuple[str, ...], value: object
) -> Callable[[dict[str, object], Path], dict[str, object]]:
    def edit(header: dict[str, object], root: Path) -> dict[str, object]:
        header = json.loads(json.dumps(header))
        node: dict[str, object] = header
        for key in path[:-1]:
            node = node[key]  # type: ignore[assignment]
        node[path[-1]] = value
        return header

    return edit


def recorded_file(
    make: Callable[[Path], object],
) -> Callable[[dict[str, object], Path], dict[str, object]]:
    """The header records a profile file that is now a FIFO, a device...; the plan differs."""

    def edit(header: dict[str, object], root: Path) -> dict[str, object]:
        special = root / "special.yaml"
        make(special)
        header = json.loads(json.dumps(header))
        header["plan_hash"] = "0" * 64
        header["profile"]["files"] = {str(special): "0" * 64}  # type: ignore[index]
        return header

    return edit


def in_recorded_dir(
    name: str, make: Callable[[Path], object]
) -> Callable[[dict[str, object], Path], dict[str, object]]:
    """Put a special file into the profiles directory the journal records (header as is)."""

    def edit(header: dict[str, object], root: Path) -> dict[str, object]:
        make(root / "profiles" / name)
        return header

    return edit


def appended(*extra: str) -> Callable[[list[str]], list[str]]:
    return lambda rest: [*rest, *extra]


def event(seq: int, kind: str, **fields: object) -> str:
    return json.dumps(
        {"v": 1, "seq": seq, "at": "2026-01-01T00:00:00Z", "session": 1, "event": kind, **fields}
    )


def _resume_with_journal(c: Ctx, make: Callable[[Path], object]) -> list[str]:
    """`run --resume` on a fresh run folder whose journal.jsonl is what `make` leaves."""
    c.run_dir.mkdir()
    make(c.run_dir / "journal.jsonl")
    return ["run", "--resume", str(c.run_dir)]


def journal_case(case_id: str, build: Callable[[Ctx], list[str]], names: str) -> Case:
    return Case(
        case_id, build, USAGE, rf"^imageprep: error: .*(?:{names})", written=run_folder_unchanged
    )


J = r".*journal\.jsonl:"
JOURNAL_CASES = [
    journal_case(
        "header-no-plan-hash",
        forged(without("plan_hash")),
        J + r"1: the run_started header lacks plan_hash",
    ),
    journal_case(
        "header-no-target", forged(without("target")), J + r"1: the run_started header lacks target"
    ),
    journal_case("header-no-run-id", forged(without("run_id")), J + r"1: .*lacks run_id"),
    journal_case("header-no-request", forged(without("request")), J + r"1: .*lacks request"),
    journal_case("header-no-facts", forged(without("facts")), J + r"1: .*lacks facts"),
    journal_case(
        "header-no-profile-id", forged(without("profile", "id")), J + r"1: .*lacks profile\.id"
    ),
    journal_case(
        "header-target-list",
        forged(setting(("target",), ["ssh://x"])),
        J + r"1: .*target is a list",
    ),
    journal_case(
        "header-plan-hash-int", forged(setting(("plan_hash",), 5)), J + r"1: .*plan_hash is 5"
    ),
    journal_case(
        "header-vars-list", forged(setting(("request", "vars"), [1])), J + r"1: .*request\.vars"
    ),
    journal_case(
        "header-selection-str",
        forged(setting(("request", "selection"), "all")),
        J + r"1: .*request\.selection",
    ),
    journal_case(
        "header-only-ints",
        forged(setting(("request", "selection", "only"), [1, 2])),
        J + r"1: .*selection\.only",
    ),
    journal_case(
        "header-dirs-nested",
        forged(setting(("request", "profiles_dirs"), [["x"]])),
        J + r"1: .*profiles_dirs",
    ),
    journal_case(
        "header-files-list",
        forged(setting(("profile", "files"), ["x"])),
        J + r"1: .*profile\.files",
    ),
    journal_case(
        "header-deep",
        forged(setting(("facts",), json.loads(nested("[", "]", 200)))),
        J + r"1: nested deeper than 50",
    ),
    journal_case("header-not-object", forged(lambda h, r: [h]), J + r"1: not a JSON object"),  # type: ignore[arg-type, return-value]
    journal_case("header-format-2", forged(setting(("v",), 2)), J + r"1: unknown journal format 2"),
    journal_case(
        "header-event-list", forged(setting(("event",), ["run_started"])), J + r"1: unknown event"
    ),
    journal_case(
        "result-list",
        forged(lines=appended(event(9, "step_finished", step="work/clean", result=[1, 2]))),
        J + r"\d+: malformed step_finished event",
    ),
    journal_case(
        "result-status-bogus",
        forged(
            lines=appended(
                event(
                    9,
                    "step_finished",
                    step="work/clean",
                    result={"phase": "work", "name": "clean", "status": "exploded"},
                )
            )
        ),
        J + r"\d+: malformed step_finished",
    ),
    journal_case(
        "result-missing",
        forged(lines=appended(event(9, "step_finished", step="work/clean"))),
        J + r"\d+: malformed step_finished",
    ),
    journal_case(
        "record-list",
        forged(lines=appended(event(9, "backup_recorded", record=[1]))),
        J + r"\d+: malformed backup_recorded",
    ),
    journal_case(
        "session-infinity",
        forged(
            lines=appended('{"v":1,"seq":9,"at":"x","session":Infinity,"event":"session_started"}')
        ),
        J + r"\d+: malformed session_started",
    ),
    journal_case(
        "session-string",
        forged(lines=appended(event(9, "session_started", session="two"))),
        J + r"\d+: ",
    ),
    journal_case(
        "step-not-string",
        forged(lines=appended(event(9, "step_started", step=["a"]))),
        J + r"\d+: step_started without a step",
    ),
    journal_case(
        "seq-backwards",
        forged(lines=appended(event(1, "step_started", step="work/clean"))),
        J + r"\d+: sequence number 1 out of order",
    ),
    journal_case(
        "seq-huge",
        forged(lines=appended('{"v":1,"seq":' + "9" * 5000 + "}", event(99, "run_finished"))),
        J + r"\d+: not a JSON object",
    ),
    journal_case(
        "line-deep-1000",
        forged(lines=appended(nested("[", "]", 1000), event(99, "run_finished"))),
        J + r"\d+: nested deeper|not a JSON object",
    ),
    journal_case(
        "line-deep-5000",
        forged(lines=appended('{"x":' + nested("[", "]", 5000) + "}", event(99, "run_finished"))),
        J + r"\d+: nested deeper than 50",
    ),
    journal_case(
        "line-deep-100",
        forged(
            lines=appended(
                '{"v":1,"seq":9,"x":' + nested('{"a":', "}", 100) + "}", event(99, "run_finished")
            )
        ),
        J + r"\d+: nested deeper than 50",
    ),
    journal_case(
        "line-not-json",
        forged(lines=appended("hello", event(99, "run_finished"))),
        J + r"\d+: not a JSON object",
    ),
    journal_case(
        "line-empty", forged(lines=appended("", event(99, "run_finished"))), J + r"\d+: empty line"
    ),
    journal_case(
        "line-json-string",
        forged(lines=appended('"\\ud800"', event(99, "run_finished"))),
        J + r"\d+: not a JSON object",
    ),
    journal_case(
        "second-header",
        forged(lines=lambda rest: [*rest, json.dumps({"v": 1, "seq": 50, "event": "run_started"})]),
        J + r"\d+: a second run_started header",
    ),
    journal_case(
        "waiver-empty",
        forged(lines=appended(event(9, "backup_waived", reason=""))),
        J + r"\d+: backup_waived without a reason",
    ),
    Case(
        "recorded-profile-is-fifo",
        forged(recorded_file(os.mkfifo)),
        USAGE,
        r"^imageprep: error: --resume .*: the plan rebuilt today differs .*special\.yaml",
        written=run_folder_unchanged,
    ),
    Case(
        "recorded-profile-is-dev-zero",
        forged(recorded_file(lambda p: p.symlink_to("/dev/zero"))),
        USAGE,
        r"differs .*special\.yaml",
        written=run_folder_unchanged,
    ),
    Case(
        "recorded-dir-holds-huge-profile",
        forged(in_recorded_dir("huge.yaml", lambda p: p.write_bytes(b"#" * (2 << 20)))),
        USAGE,
        r"cannot rebuild the plan .*huge\.yaml: cannot read: \d+ bytes",
        written=run_folder_unchanged,
    ),
    Case(
        "recorded-dir-holds-fifo",
        lambda c: [
            *forged(in_recorded_dir("fifo.yaml", os.mkfifo))(c),
            *("--known-hosts", str(c.root / "known_hosts")),
        ],
        CONNECT,
        r"cannot connect to resume",  # the FIFO is not a profile file: skipped, not opened
        written=final_result(CONNECT),
    ),
    Case(
        "recorded-profile-huge",
        forged(recorded_file(lambda p: p.write_bytes(b"#" * (3 << 20)))),
        USAGE,
        r"differs .*special\.yaml",
        written=run_folder_unchanged,
    ),
    journal_case(
        "journal-is-fifo",
        lambda c: _resume_with_journal(c, os.mkfifo),
        r"no journal\.jsonl in it",
    ),
    journal_case(
        "journal-is-dir",
        lambda c: _resume_with_journal(c, Path.mkdir),
        r"no journal\.jsonl",
    ),
    journal_case(
        "journal-empty",
        lambda c: _resume_with_journal(c, lambda p: p.write_text("")),
        r"is empty",
    ),
]


# -- misbehaving peers ----------------------------------------------------------------------


def peer_case(
    case_id: str,
    scheme: str,
    handler: peers.Handler | None,
    names: str,
    *extra: str,
    tls: bool = False,
    sub: bool = False,
) -> Case:
    """`check` against a broken peer on 127.0.0.1: exit 4, one line naming it, final report."""

    def build(ctx: Ctx) -> list[str]:
        if handler is None:
            port = peers.closed_port()
        else:
            context = peers.self_signed_context(ctx.root) if tls else None
            port = ctx.stack.enter_context(peers.serve(handler, tls=context)).port
        argv = ["check", "--target", f"{scheme}://u@127.0.0.1:{port}", "--run-dir"]
        argv += [str(ctx.run_dir), "--log-format", "text", *ctx.password_env()]
        argv += [arg.replace("{root}", str(ctx.root)) for arg in extra]
        if scheme == "ssh":  # never the user's own known_hosts
            argv += ["--known-hosts", str(ctx.root / "known_hosts")]
        return argv

    return Case(
        case_id,
        build,
        CONNECT,
        rf"run\.end (?=.*127\.0\.0\.1:\d+).*(?:{names})",
        written=final_result(CONNECT),
        subprocess=sub,
    )


XML_FAULT = (
    b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
    b"<s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code></s:Fault></s:Body>"
    b"</s:Envelope>"
)

PEER_CASES = [
    peer_case("ssh-closed-port", "ssh", None, r"connection refused"),
    peer_case(
        "ssh-http-server",
        "ssh",
        peers.HTTP_ANSWER,
        r"timed out after 1 s waiting for .* to speak SSH",
        "--connect-timeout",
        "1",
    ),
    peer_case(
        "ssh-silent",
        "ssh",
        peers.silent,
        r"timed out after 1 s waiting for 127\.0\.0\.1:\d+ to speak SSH",
        "--connect-timeout",
        "1",
    ),
    peer_case(
        "ssh-silent-subprocess",
        "ssh",
        peers.silent,
        r"timed out after 1\.5 s",
        "--connect-timeout",
        "1.5",
        sub=True,
    ),
    peer_case(
        "ssh-garbage-banner", "ssh", peers.garbage_banner, r"did not answer with an SSH banner"
    ),
    peer_case(
        "ssh-garbage-banner-subprocess",
        "ssh",
        peers.garbage_banner,
        r"did not answer with an SSH banner",
        sub=True,
    ),
    peer_case(
        "ssh-closes-at-once",
        "ssh",
        lambda conn: conn.close(),
        r"closed the connection|SSH banner|connect",
    ),
    peer_case("winrm-closed-port", "winrm", None, r"refused"),
    peer_case(
        "winrm-200-html", "winrm", peers.HTTP_ANSWER, r"answered without NTLM authentication"
    ),
    peer_case(
        "winrm-200-garbage-xml",
        "winrm",
        peers.http_answer("200 OK", peers.GARBAGE_XML, "application/soap+xml"),
        r"answered without NTLM authentication",
    ),
    peer_case(
        "winrm-200-html-subprocess", "winrm", peers.HTTP_ANSWER, r"answered without NTLM", sub=True
    ),
    peer_case(
        "winrm-500",
        "winrm",
        peers.http_answer("500 Internal Server Error", peers.GARBAGE_XML, "application/soap+xml"),
        r"HTTP 500",
    ),
    peer_case(
        "winrm-500-fault",
        "winrm",
        peers.http_answer("500 Internal Server Error", XML_FAULT, "application/soap+xml"),
        r"500|fault|malformed",
    ),
    peer_case(
        "winrm-redirect",
        "winrm",
        peers.http_answer("302 Found", b"", "text/html", "Location: http://127.0.0.1:9/wsman\r\n"),
        r".",
    ),
    peer_case(
        "winrm-401-no-ntlm",
        "winrm",
        peers.http_answer(
            "401 Unauthorized", b"", "text/html", "WWW-Authenticate: Basic realm=x\r\n"
        ),
        r"NTLM|credentials|401",
    ),
    peer_case(
        "winrm-https-self-signed",
        "winrm+https",
        peers.HTTP_ANSWER,
        r"certificate verify failed",
        tls=True,
    ),
    peer_case(
        "winrm-https-plain-http",
        "winrm+https",
        peers.HTTP_ANSWER,
        r"no answer from .* \(or 1 s to connect\)",
        "--connect-timeout",
        "1",
    ),
    peer_case(
        "winrm-https-basic-garbage-xml",
        "winrm+https",
        peers.http_answer("200 OK", peers.GARBAGE_XML, "application/soap+xml"),
        r"malformed WinRM answer",
        "--winrm-transport",
        "basic",
        "--ca-cert",
        "{root}/peer.crt",
        tls=True,
    ),
    peer_case(
        "winrm-https-basic-html",
        "winrm+https",
        peers.HTTP_ANSWER,
        r"malformed WinRM answer",
        "--winrm-transport",
        "basic",
        "--ca-cert",
        "{root}/peer.crt",
        tls=True,
    ),
    peer_case("winrm-garbage-bytes", "winrm", peers.garbage_banner, r"connection|malformed|HTTP"),
]


def run_no_backup(ctx: Ctx) -> list[str]:
    """`run --no-backup` against a closed port: the run folder tells the story."""
    target = f"ssh://u@127.0.0.1:{peers.closed_port()}"
    return [
        *("run", "--target", target, "--no-backup", "--reason", "hostile test"),
        "--run-dir",
        str(ctx.run_dir),
        "--log-format",
        "text",
        "--known-hosts",
        str(ctx.root / "known_hosts"),
        *ctx.password_env(),
    ]


def resume_with_result_fifo(ctx: Ctx) -> list[str]:
    """A forged run folder whose result.json is a FIFO, against a closed 127.0.0.1 port."""
    port = peers.closed_port()
    argv = forged(setting(("target",), f"ssh://azureuser@127.0.0.1:{port}"))(ctx)
    (ctx.run_dir / "result.json").unlink()
    os.mkfifo(ctx.run_dir / "result.json")
    return [*argv, "--known-hosts", str(ctx.root / "known_hosts")]


def long_host(ctx: Ctx) -> list[str]:
    """A host name no resolver would take (a 300-character label): refused before DNS."""
    target = "ssh://u@" + "h" * 300
    return ["check", "--target", target, "--run-dir", str(ctx.run_dir), "--log-format", "text"]


PEER_CASES += [
    Case(
        "host-label-too-long",
        long_host,
        CONNECT,
        r"not a valid host name",
        written=final_result(CONNECT),
    ),
    Case("ssh-closed-port-run", run_no_backup, CONNECT, r"refused", written=final_result(CONNECT)),
    Case(
        "resume-result-json-fifo",
        resume_with_result_fifo,
        CONNECT,
        r"cannot connect to resume",
        written=final_result(CONNECT),
    ),
]

ALL = [
    *YAML_CASES,
    *SPECIAL_FILE_CASES,
    *SCHEMA_CASES,
    *WHEN_CASES,
    *PLAN_CASES,
    *URL_CASES,
    *FLAG_CASES,
    *JOURNAL_CASES,
    *PEER_CASES,
]


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    """At least 150 hostile inputs, each with its own id."""
    ids = [case.id for case in ALL]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", ALL, ids=[case.id for case in ALL])
def test_hostile_input(case: Case, tmp_path: Path) -> None:
    """One bad input: its exit code, one line, no traceback, bounded, nothing leaked."""
    run_case(case, tmp_path)
