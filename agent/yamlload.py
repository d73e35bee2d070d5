"""YAML loading that remembers where every value came from.

Files are composed with PyYAML's safe loader first (nodes carry ``start_mark``), then
constructed into plain Python data. Validation errors from pydantic are mapped back to
the nodes, so every problem reads like::

    distro_profiles/debian.yaml:42:7: phases.cleanup[3].timeout: expected an integer > 0, got "fast"

Lines and columns are 1-based. Unknown keys point at the key, missing keys at the mapping
that lacks them, everything else at the offending value. All problems of one file are
raised together as one :class:`~agent.errors.SchemaError`.

Models steer the wording through ``json_schema_extra`` on their fields:
``{"expected": "an integer > 0"}`` for the value itself, ``"item"`` for a list item or a
mapping value, ``"key"`` for a mapping key. Model validators that check a rule across
fields raise ``PydanticCustomError("rule", "{message}", {"message": ..., "at": (...)})``;
``at`` (optional) is the location below the model the rule is about.
"""

from __future__ import annotations

import datetime
import difflib
import json
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from agent.errors import SchemaError, SchemaProblem
from agent.excerpt import clip, excerpt
from agent.limits import MAX_DEPTH, MAX_INT_CHARS, MAX_YAML_BYTES, MAX_YAML_VALUES
from agent.safefiles import read_regular

# pydantic is imported where a document is validated: reading YAML (a var file, a
# profile on a cache miss before validation) does not need it.
if TYPE_CHECKING:
    import pydantic
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

__all__ = [
    "Loc",
    "YamlDocument",
    "format_loc",
    "load_yaml",
    "parse_yaml",
    "problems_from_pydantic",
    "validate_document",
]

Loc = tuple[str | int, ...]
M = TypeVar("M", bound="BaseModel")


def format_loc(loc: Iterable[str | int]) -> str:
    """``("phases", "cleanup", 3, "timeout")`` -> ``phases.cleanup[3].timeout``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("@") or part == "[key]":
            continue  # union tags and pydantic's key marker are not user-visible
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True)
class YamlDocument:
    """One parsed YAML file: its data and the node tree the data was built from."""

    file: str
    data: Any
    root: yaml.Node | None

    def node_at(self, loc: Sequence[str | int], *, key: bool = False) -> yaml.Node | None:
        """The node at ``loc`` (its key node with ``key=True``), else the deepest one found."""
        node = self.root
        key_node: yaml.Node | None = None
        for part in loc:
            if isinstance(part, str) and (part.startswith("@") or part == "[key]"):
                continue
            found = _child(node, part)
            if found is None:
                return node
            key_node, node = found
        if key and key_node is not None:
            return key_node
        return node

    def position(
        self, loc: Sequence[str | int], *, key: bool = False
    ) -> tuple[int | None, int | None]:
        node = self.node_at(loc, key=key)
        if node is None:
            return None, None
        return node.start_mark.line + 1, node.start_mark.column + 1

    def problem(
        self, loc: Sequence[str | int], message: str, *, key: bool = False, field: str | None = None
    ) -> SchemaProblem:
        """A problem located at ``loc``; ``field`` overrides the shown field path."""
        line, column = self.position(loc, key=key)
        return SchemaProblem(
            self.file, line, column, format_loc(loc) if field is None else field, message
        )


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                return k, v
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return None, node.value[part]
    return None


def load_yaml(path: Path, display: str | None = None) -> YamlDocument:
    """Read and parse ``path``; ``display`` is how messages name it (default: the path)."""
    name = display or str(path)
    try:
        raw = read_regular(path, MAX_YAML_BYTES)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise SchemaError([SchemaProblem(name, None, None, "", f"cannot read: {why}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start + 1})"
        raise SchemaError([SchemaProblem(name, None, None, "", message)]) from None
    return parse_yaml(text, name)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit and integers of bounded length.

    PyYAML composes nodes recursively: a few hundred nested ``[`` end in RecursionError,
    so depth is counted here and refused far below that. ``int()`` raises on more than
    4300 digits; a long integer literal is refused with its position instead.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's constructors fail on some malformed scalars with plain Python errors
        # (``!!timestamp nope`` is an AttributeError): give them the node's position.
        try:
            # Named, not super(): _CBoundedLoader borrows this method (same constructor).
            return yaml.constructor.BaseConstructor.construct_object(self, node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise ConstructorError(
                None, None, f"not a valid {kind} value ({type(exc).__name__})", node.start_mark
            ) from None

    def construct_bounded_int(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if len(text) > MAX_INT_CHARS:
            raise ConstructorError(
                None,
                None,
                f"an integer of {len(text)} characters (at most {MAX_INT_CHARS})",
                node.start_mark,
            )
        return self.construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_int)


_CLoader: Any = getattr(yaml, "CSafeLoader", None)


if _CLoader is not None:

    class _CBoundedLoader(_CLoader):  # type: ignore[misc]
        """libyaml's parser and composer with :class:`_BoundedLoader`'s constructors.

        libyaml composes in C, recursively and without Python's recursion limit, so a
        document is composed by it only after :func:`_within_depth` has walked its
        events; nodes keep their marks (line and column), as the Python composer's do.
        """

        construct_object = _BoundedLoader.construct_object
        construct_bounded_int = _BoundedLoader.construct_bounded_int

    _CBoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_int)

_COLLECTION_START = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_COLLECTION_END = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _within_depth(text: str) -> bool:
    """Whether no collection in ``text`` nests deeper than MAX_DEPTH (libyaml's events)."""
    loader = _CLoader(text)
    try:
        depth = 0
        while (event := loader.get_event()) is not None:
            if isinstance(event, _COLLECTION_START):
                depth += 1
                if depth > MAX_DEPTH:
                    return False
            elif isinstance(event, _COLLECTION_END):
                depth -= 1
        return True
    finally:
        loader.dispose()


def _parse_fast(text: str) -> tuple[yaml.Node, Any] | None:
    """(root node, data) of a well-formed document within every bound, parsed by libyaml;
    None for anything else, which the Python loader then parses (and words the error of)."""
    if _CLoader is None or yaml.reader.Reader.NON_PRINTABLE.search(text):
        return None
    try:
        if not _within_depth(text):
            return None
        loader = _CBoundedLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _check_expansion(root, "")
            if next(iter(_duplicate_keys(root, "")), None) is not None:
                return None
            return root, loader.construct_document(root)
        finally:
            loader.dispose()
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, AttributeError):
        return None


def parse_yaml(text: str, display: str) -> YamlDocument:
    """Parse one YAML document; malformed YAML, duplicate keys or a bound hit: SchemaError.

    libyaml parses a document that is well-formed and within the bounds (fast); any
    other document is parsed again by PyYAML's Python loader, whose errors are the ones
    reported, so a message does not depend on whether libyaml is installed.
    """
    if len(text) > MAX_YAML_BYTES:
        message = f"{len(text)} characters, more than the {MAX_YAML_BYTES} accepted"
        raise SchemaError([SchemaProblem(display, None, None, "", message)])
    fast = _parse_fast(text)
    if fast is not None:
        return YamlDocument(display, fast[1], fast[0])
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # its reader refuses NUL and control characters here
        root = loader.get_single_node()
        _check_expansion(root, display)
        problems = list(_duplicate_keys(root, display))
        if problems:
            raise SchemaError(problems)
        data = loader.construct_document(root) if root is not None else None
    except yaml.reader.ReaderError as exc:  # its str() spans two lines
        at = int(exc.position)
        bad_line = text.count("\n", 0, at) + 1
        bad_column = at - (text.rfind("\n", 0, at) + 1) + 1
        message = f"YAML error: unacceptable character #x{exc.character:04x} ({exc.reason})"
        raise SchemaError([SchemaProblem(display, bad_line, bad_column, "", message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        what = clip(what, 200)
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = SchemaProblem(display, line, column, "", f"YAML error: {what}")
        raise SchemaError([problem]) from None
    except yaml.YAMLError as exc:
        message = f"YAML error: {clip(str(exc), 200)}"
        raise SchemaError([SchemaProblem(display, None, None, "", message)]) from None
    except RecursionError:  # a bound above should come first; never a traceback
        message = f"YAML error: nested too deeply (at most {MAX_DEPTH} levels)"
        raise SchemaError([SchemaProblem(display, None, None, "", message)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise SchemaError([SchemaProblem(display, 1, 1, "", "the file is empty")])
    return YamlDocument(display, data, root)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node | None, display: str) -> None:
    """Refuse a document whose aliases expand it past the limit, or refer to themselves.

    Aliases share one node, so the node graph stays small; everything after parsing
    (the constructed data, pydantic, messages) sees every alias expanded, and nine
    levels of nine aliases are 387 million values (billion laughs). The expanded size of
    each node is counted once (memoized), so this costs one pass over the graph.
    """
    if root is None:
        return
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_YAML_VALUES:
                raise ComposerError(
                    None,
                    None,
                    f"more than {MAX_YAML_VALUES} values once aliases are expanded",
                    node.start_mark,
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ComposerError(
                None,
                None,
                "an alias inside its own anchor (a recursive structure)",
                node.start_mark,
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _duplicate_keys(node: yaml.Node | None, display: str) -> Iterable[SchemaProblem]:
    # PyYAML silently keeps the last of two equal keys; a profile with two `run:` keys
    # would lose one without a word, so refuse them.
    seen_nodes: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in first:
                        line = first[k.value].start_mark.line + 1
                        yield SchemaProblem(
                            display,
                            k.start_mark.line + 1,
                            k.start_mark.column + 1,
                            "",
                            f'duplicate key "{k.value}" (first at line {line})',
                        )
                    else:
                        first[k.value] = k
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def validate_document(doc: YamlDocument, model: type[M]) -> M:
    """Validate the document's data as ``model``; all problems raise one SchemaError."""
    import pydantic

    try:
        return model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        raise SchemaError(problems_from_pydantic(doc, model, exc)) from None


def problems_from_pydantic(
    doc: YamlDocument,
    model: type[BaseModel],
    exc: pydantic.ValidationError,
    prefix: Loc = (),
) -> list[SchemaProblem]:
    """Translate ``exc`` (raised validating ``model`` at ``prefix`` in ``doc``) to problems."""
    problems = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "rule" and ctx.get("at"):
            loc = loc + tuple(ctx["at"])
        full = prefix + loc
        if kind == "missing":
            parent = full[:-1]
            message = f'missing required field "{full[-1]}"'
            problems.append(doc.problem(parent, message, field=format_loc(parent)))
        elif kind == "extra_forbidden":
            parent = full[:-1]
            message = f'unknown field "{full[-1]}"'
            known = _model_fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(full[-1]), known, n=1, cutoff=0.6)
            if close:
                message += f' (did you mean "{close[0]}"?)'
            elif known:
                message += f" (expected one of: {', '.join(known)})"
            problems.append(doc.problem(full, message, key=True, field=format_loc(parent)))
        else:
            is_key = "[key]" in loc
            problems.append(doc.problem(full, _message(err, model, loc), key=is_key))
    return problems


def _message(err: Any, model: type[BaseModel], loc: Loc) -> str:
    kind: str = err["type"]
    got = _show(err.get("input"))
    if kind == "rule":
        return str(err["ctx"]["message"])
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {got}"
    expected = _expected(model, loc)
    if expected:
        return f"expected {expected}, got {got}"
    msg = str(err["msg"])
    return f"{msg[:1].lower()}{msg[1:]}, got {got}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return json.dumps(text)
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    return excerpt(value)


# --------------------------------------------------------------- walking model annotations


def _strip(tp: Any) -> Any:
    """Unwrap ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _tagged(tp: Any, tag: str) -> Any:
    from pydantic import Tag

    for arg in get_args(_strip(tp)):
        if get_origin(arg) is Annotated:
            base, *meta = get_args(arg)
            if any(isinstance(m, Tag) and m.tag == tag for m in meta):
                return base
    return None


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Any, FieldInfo | None, str]:
    """Follow ``loc`` through the annotations: (type there, nearest field, role)."""
    from pydantic import BaseModel

    tp: Any = model
    info: FieldInfo | None = None
    role = "expected"
    for part in loc:
        if part == "[key]":
            role = "key"
            continue
        if isinstance(part, str) and part.startswith("@"):
            tp = _tagged(tp, part)
            info = None
            continue
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None, None, role
            info, tp, role = field, field.annotation, "expected"
            continue
        origin = get_origin(tp)
        args = get_args(tp)
        if origin is dict and len(args) == 2:
            tp = args[1]
        elif origin in (list, tuple) and args:
            tp = args[0]
        else:
            return None, info, role
        role = "item"
    return tp, info, role


def _expected(model: type[BaseModel], loc: Loc) -> str | None:
    _tp, info, role = _walk(model, loc)
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, dict):
        text = extra.get(role)
        if isinstance(text, str):
            return text
    return None


def _model_fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    from pydantic import BaseModel

    tp, _info, _role = _walk(model, loc)
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []
