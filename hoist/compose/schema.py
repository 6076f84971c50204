"""Validation against the Compose Specification's JSON schema (``compose-spec.json``, vendored:
see README.md here for its source and version), with ``jsonschema``.

An error names the file, the service and the key (``compose.yaml: service "web": ports.0: ...``),
picked by jsonschema's ``best_match`` so a ``oneOf`` reports the branch that came closest.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from hoist.compose.errors import ComposeError, where
from hoist.compose.yamlio import Override, Reset


@functools.cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(resources.files("hoist.compose").joinpath("compose-spec.json").read_text())
    # The file says draft-07 (by a URL without the trailing '#' jsonschema keys its drafts by).
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def unwrap(node: Any) -> Any:
    """The document with ``!reset`` / ``!override`` values in place of their wrappers."""
    if isinstance(node, (Reset, Override)):
        return unwrap(node.value)
    if isinstance(node, dict):
        return {k: unwrap(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unwrap(v) for v in node]
    return node


def _describe(error: Any) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(k for k in error.instance if k not in error.schema.get("properties", {})
                       and not any(re.search(p, k) for p in error.schema.get("patternProperties", {})))
        if extra:
            names = ", ".join(repr(k) for k in extra)
            return f"additional propert{'ies' if len(extra) > 1 else 'y'} {names} not allowed"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"must be a {expected}"
    if error.validator == "oneOf":
        return f"{_short(error.instance)} is not a valid value here"
    if error.validator == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "uniqueItems":
        return "has duplicate entries"
    return error.message


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(doc: Any, name: str) -> None:
    """Raise ComposeError for the first schema violation of ``doc`` (read from file ``name``)."""
    import jsonschema

    if doc is None:
        raise ComposeError(f"{name}: empty compose file")
    if not isinstance(doc, dict):
        raise ComposeError(f"{name}: the top level must be a mapping")
    plain = unwrap(doc)
    for key in plain:
        if not isinstance(key, str):
            raise ComposeError(f"{name}: non-string key {key!r} at the top level")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(plain))
    if error is None:
        return
    path = [str(p) for p in error.absolute_path]
    service = None
    if len(path) >= 2 and path[0] == "services":
        service, path = path[1], path[2:]
    key = ".".join(path) if path else None
    if service is None and key is None:
        key = "top level"
    raise ComposeError(_describe(error), where=where(name, service, key))
