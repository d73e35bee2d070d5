"""The error tree drawn in agent/errors.py is the tree in the code, and every error in it
ends a command with a documented exit code (never 1, which means "a bug")."""

from __future__ import annotations

import inspect
import re

import pytest

from agent import errors
from agent.outcome import EXIT_CODE_MEANINGS, ExitCode, exit_code_for_error

_DRAWN = re.compile(r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z]\w+)")


def _drawn_parents() -> dict[str, str | None]:
    """Each class named in the module docstring's tree, with the class drawn above it."""
    tree = errors.__doc__.split("::", 1)[1].split("\n\n")[1]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in tree.splitlines():
        found = _DRAWN.match(line)
        if found is None:
            continue
        depth = len(found["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[found["name"]] = stack[-1][1] if stack else None
        stack.append((depth, found["name"]))
    return parents


def _error_classes() -> dict[str, type[errors.ImagePrepError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ImagePrepError)
    }


def test_every_error_class_is_drawn() -> None:
    """The docstring's tree names exactly the error classes the module defines."""
    assert set(_drawn_parents()) == set(_error_classes())


@pytest.mark.parametrize("name", sorted(_error_classes()))
def test_drawn_parent_is_the_real_base(name: str) -> None:
    """Each class hangs in the drawing under the class it really derives from."""
    cls = _error_classes()[name]
    drawn = _drawn_parents()[name]
    base = cls.__base__
    expected = None if cls is errors.ImagePrepError or base is None else base.__name__
    assert drawn == expected


def _instance(cls: type[errors.ImagePrepError]) -> errors.ImagePrepError:
    if cls is errors.SchemaError:
        return errors.SchemaError([])
    return cls("x")


@pytest.mark.parametrize("name", sorted(_error_classes()))
def test_every_error_has_a_documented_exit_code(name: str) -> None:
    """No error of the tree falls through to exit 1; its code is in --help's table."""
    cls = _error_classes()[name]
    if cls is errors.ImagePrepError:
        pytest.skip("the root is never raised itself")
    code = exit_code_for_error(_instance(cls))
    assert code is not ExitCode.INTERNAL_ERROR
    assert code in EXIT_CODE_MEANINGS
