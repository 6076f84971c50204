"""Every verb (and every sub-verb) answers ``--help`` with its usage, and ``hoist --help``
lists every verb of the command table."""

from __future__ import annotations

import pytest

from hoist.cli import COMMANDS
from tests.cli.helpers import Hoist

SUBVERBS = {"volume": ["create", "ls", "inspect", "rm", "prune"], "container": ["prune"], "image": ["prune"],
            "system": ["prune"], "registry": []}


def test_top_level_help_lists_every_verb(hoist: Hoist) -> None:
    out = hoist("--help").out
    for verb, (_, summary) in COMMANDS.items():
        assert f"  {verb} " in out and summary in out


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_has_help(hoist: Hoist, verb: str) -> None:
    res = hoist(verb, "--help", subprocess=verb in ("run", "exec", "registry"))
    assert res.code == 0 and res.out.startswith(f"usage: hoist {verb}"), res
    for sub in SUBVERBS.get(verb, []):
        res = hoist(verb, sub, "--help")
        assert res.code == 0 and res.out.startswith(f"usage: hoist {verb} {sub}"), res
