"""JSON Schemas of what imageprep reads and writes, generated from its own models.

``imageprep schema profile|playbook`` gives editors completion and checking of YAML
files (yaml-language-server reads a ``# yaml-language-server: $schema=...`` modeline);
``imageprep schema result`` is the contract of result.json for pipelines.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["SchemaKind", "json_schema"]

SchemaKind = Literal["result", "profile", "playbook"]
_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one kind of document."""
    if kind == "result":
        from agent.result_schema import ResultDocument

        schema = ResultDocument.model_json_schema()
    elif kind == "profile":
        from agent.schema import Profile

        schema = Profile.model_json_schema()
    elif kind == "playbook":
        from agent.schema import Playbook

        schema = Playbook.model_json_schema()
    else:
        raise ValueError(f"unknown schema kind {kind!r}")
    return {"$schema": _DRAFT, **schema}
