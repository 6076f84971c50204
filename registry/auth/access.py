"""Scopes (``repository:team/app:pull,push``), what each request needs, and the ACL that grants them."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from registry.auth.errors import AuthConfigError


@dataclass(frozen=True)
class Access:
    type: str
    name: str
    actions: frozenset[str]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scope(text: str) -> Access | None:
    """``type:name:actions``; the name may contain a registry port (``host:5000/app``). None if malformed."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return Access(kind, name, frozenset(a for a in actions.split(",") if a))


def parse_scopes(values: list[str]) -> list[Access]:
    """Scopes from query values; a value may hold several space-separated scopes."""
    out = []
    for value in values:
        for part in value.split():
            access = parse_scope(part)
            if access is not None:
                out.append(access)
    return out


@dataclass(frozen=True)
class Rule:
    account: str          # glob; "" matches only anonymous requests
    name: str             # glob over repository names; "registry:catalog" style names too
    actions: frozenset[str]
    type: str = "repository"

    def matches(self, account: str, access: Access) -> bool:
        if self.account == "":
            if account != "":
                return False
        elif not account or not fnmatch.fnmatchcase(account, self.account):
            return False
        return self.type in (access.type, "*") and fnmatch.fnmatchcase(access.name, self.name)


@dataclass
class ACL:
    """First matching rule wins; no match grants nothing. ``${account}`` in a name is the caller."""

    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def from_config(cls, items: Any) -> ACL:
        if items is None:
            return cls([Rule("*", "*", frozenset({"*"}), "*")])
        if not isinstance(items, list):
            raise AuthConfigError("auth.token.acl: expected a list of rules")
        rules = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "actions" not in item:
                raise AuthConfigError(f"auth.token.acl[{i}]: needs account, name and actions")
            unknown = sorted(set(map(str, item)) - {"account", "name", "actions", "type"})
            if unknown:
                raise AuthConfigError(f"auth.token.acl[{i}]: unknown key {unknown[0]!r} "
                                      "(known: account, name, actions, type)")
            actions = item["actions"]
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise AuthConfigError(f"auth.token.acl[{i}].actions: expected a list of strings")
            rules.append(Rule(str(item.get("account", "*")), str(item.get("name", "*")),
                              frozenset(actions), str(item.get("type", "repository"))))
        return cls(rules)

    def granted(self, account: str, access: Access) -> frozenset[str]:
        for rule in self.rules:
            concrete = Rule(rule.account, rule.name.replace("${account}", account), rule.actions, rule.type)
            if concrete.matches(account, access):
                if "*" in rule.actions:
                    return access.actions
                return access.actions & rule.actions
        return frozenset()
