"""``--var-file FILE``: profile vars from a YAML mapping, each value remembering its line.

The values are typed later, against the chosen profile's defaults (``plan.coerce_var``),
because the profile is known only once the target's facts are in; so each value keeps
its ``FILE:LINE`` for that error message. ``--var`` on the command line wins over a
var file, and a later var file over an earlier one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import SchemaError, ValidationError

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class VarOverrides:
    """Var overrides as given, and where each one that came from a file was written."""

    values: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)  # var -> FILE:LINE


def parse_var_items(items: Iterable[str]) -> dict[str, str]:
    """``--var KEY=VALUE`` items as text; their types come from the profile."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"--var {item[:60]!r}: expected KEY=VALUE")
        parsed[key] = value
    return parsed


def load_var_file(path: Path) -> VarOverrides:
    """The mapping in ``path``; a malformed file or a bad key is a ValidationError."""
    import yaml  # here, not above: a command without --var-file never reads YAML for it

    from agent.yamlload import load_yaml

    try:
        doc = load_yaml(path)
    except SchemaError as exc:
        raise ValidationError(f"--var-file {exc}") from None
    if not isinstance(doc.data, dict) or not isinstance(doc.root, yaml.MappingNode):
        raise ValidationError(f"--var-file {path}:1: expected a mapping of var names to values")
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key_node, _value_node in doc.root.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key is None or key not in doc.data or not _NAME.fullmatch(key):
            shown = repr(key[:60]) if isinstance(key, str) else "a non-scalar key"
            raise ValidationError(
                f"--var-file {path}:{line}: {shown} is not a var name "
                "(lowercase letters, digits and _)"
            )
        values[key] = doc.data[key]
        origins[key] = f"{path}:{line}"
    return VarOverrides(values, origins)


def merge_vars(files: Iterable[Path], items: Iterable[str]) -> VarOverrides:
    """Every ``--var-file`` in order, then ``--var`` on top: the command line wins."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for path in files:
        loaded = load_var_file(path)
        values.update(loaded.values)
        origins.update(loaded.origins)
    for key, text in parse_var_items(items).items():
        values[key] = text
        origins.pop(key, None)
    return VarOverrides(values, origins)
