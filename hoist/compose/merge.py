"""Merging compose files (the Compose Specification's "Merge and override"), on the long form.

Mappings merge key by key; sequences append (scalars that are already there are not repeated);
``command``, ``entrypoint`` and ``healthcheck.test`` are replaced; ``ports`` (unique by host_ip,
target, published and protocol), ``volumes``, ``secrets`` and ``configs`` (unique by target)
replace the entries they share a key with and append the others. ``!reset`` removes the value,
``!override`` replaces it whole. ``extends`` merges the same way, the extending service on top.
"""

from __future__ import annotations

from typing import Any

from hoist.compose.yamlio import Override, Reset

_REPLACED = {"command", "entrypoint"}


def _port_key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p.get("host_ip", ""), p.get("target"), p.get("published", ""), p.get("protocol", "tcp"))


def _target_key(v: dict[str, Any]) -> Any:
    return v.get("target") or v.get("source")


_UNIQUE = {"ports": _port_key, "volumes": _target_key, "secrets": _target_key, "configs": _target_key}


def _unique_merge(base: list[Any], over: list[Any], key: Any) -> list[Any]:
    out = list(base)
    index = {key(v): i for i, v in enumerate(out) if isinstance(v, dict)}
    for item in over:
        k = key(item) if isinstance(item, dict) else None
        if k is not None and k in index:
            out[index[k]] = merge_values(out[index[k]], item, "")
        else:
            index[k] = len(out)
            out.append(item)
    return out


def merge_values(base: Any, over: Any, key: str) -> Any:
    if isinstance(over, Reset):
        return Reset(None)
    if isinstance(over, Override):
        return strip(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        merged_map = dict(base)
        for k, v in over.items():
            if k in merged_map:
                merged = merge_values(merged_map[k], v, f"{key}.{k}" if key else k)
            else:
                merged = strip(v)
            if isinstance(merged, Reset):
                merged_map.pop(k, None)
            else:
                merged_map[k] = merged
        return merged_map
    if isinstance(base, list) and isinstance(over, list):
        if key in _REPLACED or key.endswith("healthcheck.test") or key == "test":
            return strip(over)
        if key in _UNIQUE:
            return _unique_merge(base, [strip(v) for v in over], _UNIQUE[key])
        out = list(base)
        for item in over:
            item = strip(item)
            if isinstance(item, (dict, list)) or item not in out:
                out.append(item)
        return out
    return strip(over)


def strip(node: Any) -> Any:
    """The value without merge tags (``!reset`` with nothing under it is dropped)."""
    if isinstance(node, Override):
        return strip(node.value)
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if not isinstance(v, Reset)}
    if isinstance(node, list):
        return [strip(v) for v in node if not isinstance(v, Reset)]
    if isinstance(node, Reset):
        return None
    return node


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        merged = merge_values(out[k], v, k) if k in out else strip(v)
        if isinstance(merged, Reset):
            out.pop(k, None)
        else:
            out[k] = merged
    # A file that sets an image drops an inherited build only when it says so; both may stay.
    return out


def merge_documents(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if k == "services":
            services = dict(out.get("services") or {})
            for name, svc in (v or {}).items():
                if isinstance(svc, Reset):
                    services.pop(name, None)
                elif name in services:
                    services[name] = merge_service(services[name], svc)
                else:
                    services[name] = {sk: strip(sv) for sk, sv in svc.items() if not isinstance(sv, Reset)}
            out["services"] = services
        elif k in out:
            merged = merge_values(out[k], v, k)
            if isinstance(merged, Reset):
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = strip(v)
    return out
