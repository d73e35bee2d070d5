"""`when:` conditions and `{{ ... }}` templates: a tiny, safe language over facts and vars.

Conditions are Python expression syntax, parsed with :mod:`ast` and checked against a
whitelist before anything is evaluated; nothing is ever passed to ``eval``. Allowed:

* ``and``, ``or``, ``not``; comparisons ``== != < <= > >= in``, ``not in`` (chains too);
* the names ``facts`` and ``vars`` and dotted access into them (``facts.os.id``), which
  looks up keys of mappings; names starting with ``_`` are refused;
* constants (strings, integers, floats, booleans, ``None``), lists and tuples;
* one function, ``version(x)``: a :class:`Version` compared by numeric dotted components.
  It also compares with a string or an integer (``version(facts.cloud_init_version) >=
  "23.4"``). ``version(None)`` is an error, on purpose: a missing version compared with
  ``<`` would silently be "older" or "newer". Guard it: ``facts.cloud_init_version and
  version(facts.cloud_init_version) >= "23.4"`` (``and`` short-circuits).

Anything else (other calls, subscripts, arithmetic, lambdas, comprehensions) is refused
with a :class:`~agent.errors.ValidationError` naming the expression.

Templates replace ``{{ vars.name }}`` and ``{{ facts.os.id }}`` (dotted paths only, no
expressions) and leave everything else alone, ``${SHELL_VARS}`` included.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, total_ordering
from typing import Any

from agent.errors import ValidationError
from agent.excerpt import clip, excerpt
from agent.limits import MAX_DEPTH, MAX_EXPRESSION_CHARS

__all__ = [
    "KNOWN_FACTS",
    "KNOWN_WINDOWS_FACTS",
    "ROOTS",
    "Version",
    "check_expression",
    "check_references",
    "check_template",
    "evaluate",
    "expression_references",
    "known_facts",
    "parse_version",
    "render",
    "template_references",
]

ROOTS = ("facts", "vars")

#: The shape of the facts dict ``agent/facts.py`` produces (keys only; ``None`` = a leaf).
#: ``imageprep validate`` checks every ``facts.*`` reference against it, so a typo in a
#: profile fails before any target is contacted. Keep in step with ``agent/facts.py``.
KNOWN_FACTS: Mapping[str, Any] = {
    "os": {
        "id": None,
        "id_like": None,
        "version_id": None,
        "version_codename": None,
        "pretty_name": None,
    },
    "kernel": None,
    "arch": None,
    "hostname": None,
    "user": None,
    "is_root": None,
    "tools": {"waagent": None, "cloud_init": None, "sudo": None, "systemd": None},
    "cloud_init_version": None,
    "waagent_version": None,
    "ovf_user": None,
    "resolv_conf_symlink": None,
}

#: The shape of the facts dict ``agent/facts_windows.py`` produces for a Windows target,
#: checked against ``facts.*`` references of profiles that match Windows.
KNOWN_WINDOWS_FACTS: Mapping[str, Any] = {
    "os": dict.fromkeys(("id", "id_like", "version_id", "version_codename", "pretty_name")),
    "hostname": None,
    "arch": None,
    "user": None,
    "windows": dict.fromkeys(
        (
            "product_name",
            "product_type",
            "edition_id",
            "installation_type",
            "build",
            "ubr",
            "display_version",
            "image_state",
            "generalization_state",
            "cleanup_state",
            "is_admin",
            "is_system",
            "part_of_domain",
            "domain",
        )
    ),
}


def known_facts(platform: str) -> Mapping[str, Any]:
    """The facts shape for profiles of ``platform`` (``linux`` or ``windows``)."""
    return KNOWN_WINDOWS_FACTS if platform == "windows" else KNOWN_FACTS


_VERSION_RE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A version compared by its leading numeric dotted components.

    ``"22.04"`` is ``(22, 4)``; ``"23.1-0ubuntu1~22.04.1"`` is ``(23, 1)``: anything after
    the numeric part is ignored. Missing components count as 0, so ``12 == 12.0``.
    Compares with another Version, a string (parsed the same way) or an int.
    """

    text: str
    parts: tuple[int, ...]

    def _key(self, length: int) -> tuple[int, ...]:
        return self.parts + (0,) * (length - len(self.parts))

    def _coerce(self, other: object) -> Version | None:
        if isinstance(other, Version):
            return other
        if isinstance(other, bool):  # bool is an int; True >= version("1") is a mistake
            return None
        if isinstance(other, str | int):
            return parse_version(str(other))
        return None

    def __eq__(self, other: object) -> bool:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        n = max(len(self.parts), len(o.parts))
        return self._key(n) == o._key(n)

    def __lt__(self, other: object) -> bool:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        n = max(len(self.parts), len(o.parts))
        return self._key(n) < o._key(n)

    def __hash__(self) -> int:
        parts = list(self.parts)
        while parts and parts[-1] == 0:
            parts.pop()
        return hash(tuple(parts))

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    """Parse the leading ``N[.N...]`` of ``text``; raise ValueError if there is none."""
    m = _VERSION_RE.match(text)
    if m is None:
        raise ValueError(f"not a version: {text!r} (expected digits like 22.04 or 2.9.0.4)")
    return Version(text, tuple(int(p) for p in m.group(1).split(".")))


# ---------------------------------------------------------------------------- conditions

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Call,
)

_NODE_WORDS = {
    ast.Subscript: "subscripts ([...])",
    ast.Lambda: "lambda",
    ast.BinOp: "arithmetic",
    ast.IfExp: "conditional expressions (x if c else y)",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Dict: "dict literals",
    ast.NamedExpr: "assignment (:=)",
    ast.Is: "'is' (use == or !=)",
    ast.IsNot: "'is not' (use == or !=)",
}


class _Refused(Exception):
    """Internal: the expression uses something outside the whitelist."""


def _fail(expr: str, why: str) -> ValidationError:
    # The expression is shown cut short: a message is one line, whatever the input.
    return ValidationError(f"when {clip(expr)!r}: {clip(why, 200)}")


@lru_cache(maxsize=1024)
def _parse(expr: str) -> ast.Expression:
    if not expr.strip():
        raise _fail(expr, "empty expression")
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise _fail(expr, f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise _fail(expr, f"syntax error: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        # CPython's parser gives up on deep nesting with RecursionError/MemoryError, and
        # on an integer literal past its digit limit with ValueError on some versions.
        raise _fail(expr, f"nested deeper than {MAX_DEPTH} levels or too large") from None
    if _depth(tree) > MAX_DEPTH:
        raise _fail(expr, f"nested deeper than {MAX_DEPTH} levels")
    try:
        _check_tree(tree)
    except _Refused as exc:
        raise _fail(expr, str(exc)) from None
    return tree


def _depth(tree: ast.AST) -> int:
    """How deeply the tree nests (iteratively: evaluating it recurses once per level)."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _check_tree(tree: ast.Expression) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            word = _NODE_WORDS.get(type(node), type(node).__name__)
            raise _Refused(f"{word} not allowed")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise _Refused(f"attribute {node.attr!r} not allowed (names starting with _)")
            if not isinstance(node.value, ast.Name | ast.Attribute):
                raise _Refused("dotted access only on facts and vars")
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == "version"):
                raise _Refused("only the function version(x) may be called")
            if len(node.args) != 1 or node.keywords:
                raise _Refused("version() takes exactly one argument")
            if isinstance(node.args[0], ast.Starred):
                raise _Refused("version() takes exactly one argument")
        elif isinstance(node, ast.Constant) and not isinstance(
            node.value, str | int | float | bool | type(None)
        ):
            raise _Refused(f"constant {node.value!r} not allowed")
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in ROOTS and id(node) not in callees:
            raise _Refused(f"unknown name {node.id!r} (only facts and vars)")


def check_expression(expr: str) -> None:
    """Raise ValidationError unless ``expr`` is a well-formed, whitelisted condition."""
    _parse(expr)


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in ROOTS:
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def expression_references(expr: str) -> set[str]:
    """The longest dotted paths the condition reads, e.g. ``{"facts.os.id", "vars.x"}``."""
    tree = _parse(expr)
    refs: set[str] = set()
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inner.add(id(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and id(node) not in inner:
            path = _dotted(node)
            if path is not None:
                refs.add(path)
    return refs


def evaluate(expr: str, facts: Mapping[str, Any], vars: Mapping[str, Any]) -> bool:
    """Evaluate a condition; its result is taken for its truth value.

    Raises ValidationError naming the expression for refused syntax, an unknown key, a
    comparison between unrelated types, or ``version()`` of something that is not one.
    """
    tree = _parse(expr)
    roots: dict[str, Mapping[str, Any]] = {"facts": facts, "vars": vars}
    try:
        return bool(_eval(tree.body, roots))
    except _EvalError as exc:
        raise _fail(expr, str(exc)) from None


class _EvalError(Exception):
    """Internal: evaluation failed; re-raised as ValidationError naming the expression."""


def _eval(node: ast.AST, roots: Mapping[str, Mapping[str, Any]]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return roots[node.id]
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, roots)
        return _lookup(base, node.attr, _dotted(node.value) or "value")
    if isinstance(node, ast.BoolOp):
        result: Any = None
        for value in node.values:
            result = _eval(value, roots)
            if isinstance(node.op, ast.And) and not result:
                return result
            if isinstance(node.op, ast.Or) and result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):  # only `not` passes the whitelist
        return not _eval(node.operand, roots)
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, roots) for e in node.elts]
    if isinstance(node, ast.Call):
        return _version_of(_eval(node.args[0], roots), ast.unparse(node.args[0]))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, roots)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, roots)
            if not _compare(op, left, right):
                return False
            left = right
        return True
    raise _EvalError(f"{type(node).__name__} not allowed")  # unreachable after _parse


def _lookup(base: Any, key: str, where: str) -> Any:
    if not isinstance(base, Mapping):
        raise _EvalError(f"{where} is {_kind(base)}, not a mapping; cannot read .{key}")
    if key not in base:
        known = ", ".join(sorted(str(k) for k in base)) or "none"
        raise _EvalError(f"{where} has no key {key!r} (known: {known})")
    return base[key]


def _version_of(value: Any, source: str) -> Version:
    if value is None:
        raise _EvalError(
            f"version({source}): the value is null (not known on this target); "
            f"guard it: `{source} and version({source}) ...`"
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _EvalError(f"version({source}): expected a string, got {_kind(value)}")
    try:
        return parse_version(str(value))
    except ValueError as exc:
        raise _EvalError(f"version({source}): {exc}") from None


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.In | ast.NotIn):
        if not isinstance(right, list | tuple | str | Mapping):
            raise _EvalError(f"'in' needs a list or string on the right, got {_kind(right)}")
        if isinstance(right, str) and not isinstance(left, str):
            raise _EvalError(f"cannot look for {_kind(left)} in a string")
        found = left in right
        return found if isinstance(op, ast.In) else not found
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    try:
        if isinstance(op, ast.Lt):
            return bool(left < right)
        if isinstance(op, ast.LtE):
            return bool(left <= right)
        if isinstance(op, ast.Gt):
            return bool(left > right)
        return bool(left >= right)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError):
            raise _EvalError(str(exc)) from None
        raise _EvalError(f"cannot order {_kind(left)} and {_kind(right)}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Version):
        return "a version"
    if isinstance(value, str):
        return f"the string {excerpt(value)}"
    if isinstance(value, int | float):
        return f"the number {excerpt(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


# ---------------------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_PATH = re.compile(r"^(facts|vars)(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def template_references(template: str) -> list[str]:
    """The dotted paths a template uses, in order; ValidationError if one is malformed."""
    refs = []
    for m in _PLACEHOLDER.finditer(template):
        path = m.group(1).strip()
        if not _PATH.match(path) or any(p.startswith("_") for p in path.split(".")):
            raise ValidationError(
                f"template placeholder {m.group(0)!r}: only dotted paths like "
                "{{ vars.name }} or {{ facts.os.id }} are allowed"
            )
        refs.append(path)
    return refs


def check_template(template: str) -> None:
    """Raise ValidationError if a ``{{ ... }}`` placeholder is not a dotted path."""
    template_references(template)


def render(
    template: str,
    facts: Mapping[str, Any],
    vars: Mapping[str, Any],
    *,
    quote: Callable[[str], str] | None = None,
    separator: str = " ",
) -> str:
    """Replace each ``{{ path }}`` by its value; everything else is left untouched.

    Values become text as: strings as is, integers in decimal, booleans ``true``/``false``,
    ``None`` the empty string, lists their items joined by ``separator`` (a space: shell
    words; ``", "`` makes a PowerShell array). ``quote`` (e.g. :func:`shlex.quote`) is
    applied to each string (each item of a list) so a value is always one shell word;
    without it the text is inserted raw. An unknown path raises ValidationError.
    """
    roots: dict[str, Mapping[str, Any]] = {"facts": facts, "vars": vars}
    check_template(template)

    def one(m: re.Match[str]) -> str:
        path = m.group(1).strip()
        head, *keys = path.split(".")
        value: Any = roots[head]
        where = head
        try:
            for key in keys:
                value = _lookup(value, key, where)
                where += f".{key}"
        except _EvalError as exc:
            raise ValidationError(f"template {m.group(0)!r}: {exc}") from None
        return _text(value, quote, m.group(0), separator)

    return _PLACEHOLDER.sub(one, template)


def _text(
    value: Any, quote: Callable[[str], str] | None, placeholder: str, separator: str = " "
) -> str:
    q = quote or (lambda s: s)
    if value is None:
        return q("")
    if isinstance(value, bool):
        return q("true" if value else "false")
    if isinstance(value, str | int):
        return q(str(value))
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return separator.join(q(str(v)) for v in value)
    raise ValidationError(f"template {placeholder!r}: cannot insert {_kind(value)}")


# ---------------------------------------------------------------------------- references


def check_references(
    refs: Iterable[str],
    var_names: Iterable[str],
    known_facts: Mapping[str, Any] = KNOWN_FACTS,
) -> list[str]:
    """Messages for each reference that names no known var or fact (empty when all good).

    ``vars.x`` must name a defined var (lists are not descended into); ``facts.a.b`` must
    follow :data:`KNOWN_FACTS`.
    """
    names = set(var_names)
    problems = []
    for ref in sorted(set(refs)):
        head, *keys = ref.split(".")
        if not keys:
            problems.append(f"{ref} alone is not a value; use {ref}.<name>")
        elif head == "vars":
            if keys[0] not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.append(f"unknown var {ref} (defined: {known})")
            elif len(keys) > 1:
                problems.append(f"{ref}: vars are not mappings")
        else:
            node: Any = known_facts
            for i, key in enumerate(keys):
                if not isinstance(node, Mapping) or key not in node:
                    where = ".".join([head, *keys[:i]])
                    problems.append(f"unknown fact {ref} ({where} has no {key!r})")
                    break
                node = node[key]
    return problems
