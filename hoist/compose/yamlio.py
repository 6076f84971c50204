"""Reading compose YAML safely, and writing the canonical form.

Reading: ``yaml.SafeLoader`` (no Python objects) with YAML 1.2's core schema for plain scalars, as
compose-go's parser (yaml.v3) reads them: ``on``/``off``/``yes``/``no`` are strings (a service named
``off``), ``22:22`` is a string and not YAML 1.1's base-60 integer 1342, ``0o17`` is octal; duplicate
keys refused (as compose-go's YAML
parser does), the merge tags ``!reset`` and ``!override`` of the Compose Specification kept as
wrappers for the merge, and bounds for hostile files: the file's size and the number of nodes
once aliases are expanded (a "billion laughs" file is a few hundred bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hoist.compose.errors import ComposeError

MAX_FILE_BYTES = 16 << 20
MAX_NODES = 1_000_000
MAX_TEXT_BYTES = 64 << 20     # of all strings once aliases are expanded (a long string aliased often)


@dataclass(frozen=True)
class Reset:
    """``!reset``: the key takes its type's empty value in the merged model."""
    value: Any

    def with_value(self, value: Any) -> Reset:
        return Reset(value)


@dataclass(frozen=True)
class Override:
    """``!override``: the value replaces the earlier file's, bypassing the merge rules."""
    value: Any

    def with_value(self, value: Any) -> Override:
        return Override(value)


class _Loader(yaml.SafeLoader):
    pass


_YAML11_TYPES = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_TYPES]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0[0-7_]+|[-+]?0o[0-7_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+)$"),
    list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    return sign * int(digits, 0) if digits[:2] in ("0x", "0b") else sign * int(digits, 8 if len(digits) > 1
                                                                              and digits[0] == "0" else 10)


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a scalar",
                                                    key_node.start_mark) from None
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"mapping key {key!r} already defined",
                                                    key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _tagged(cls: type) -> Any:
    def construct(loader: _Loader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return cls(_mapping(loader, node))
        if isinstance(node, yaml.SequenceNode):
            return cls(loader.construct_sequence(node, deep=True))
        assert isinstance(node, yaml.ScalarNode)
        return cls(loader.construct_scalar(node) if node.value != "" else None)
    return construct


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("!reset", _tagged(Reset))
_Loader.add_constructor("!override", _tagged(Override))


def _check_size(doc: Any, name: str) -> None:
    count = text = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ComposeError(f"{name}: more than {MAX_NODES} values once YAML aliases are expanded")
        if isinstance(node, str):
            text += len(node)
            if text > MAX_TEXT_BYTES:
                raise ComposeError(f"{name}: more than {MAX_TEXT_BYTES >> 20} MiB of text once YAML aliases "
                                   f"are expanded")
        elif isinstance(node, dict):
            text += sum(len(k) for k in node if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, (Reset, Override)):
            stack.append(node.value)


def load_yaml_text(text: str, name: str) -> Any:
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ComposeError(f"{name}{at}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{name}: {e}") from None
    except RecursionError:
        raise ComposeError(f"{name}: nested too deeply") from None
    _check_size(doc, name)
    return doc


def load_yaml_file(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ComposeError(f"compose file {path} not found") from None
    except IsADirectoryError:
        raise ComposeError(f"compose file {path} is a directory") from None
    except OSError as e:
        raise ComposeError(f"cannot read compose file {path}: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ComposeError(f"compose file {path} is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ComposeError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    return load_yaml_text(text, str(path))


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Sequences indented under their key, as docker compose prints them.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     indent=2, width=1 << 16)
