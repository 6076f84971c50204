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


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--bogus", "busybox"], "hoist run: error: unrecognized arguments: --bogus"),
    (["run", "--sig-proxy=maybe", "busybox"], 'hoist run: error: invalid argument "maybe" for "--sig-proxy" flag: '
                                              "expected true or false"),
    (["volume", "create", "--nope"], "hoist volume: error: unrecognized arguments: --nope"),
    (["tag"], "hoist tag: error: the following arguments are required: SRC, DST"),
])
def test_a_bad_flag_is_one_line_not_the_usage(hoist: Hoist, args: list[str], message: str) -> None:
    res = hoist(*args, ok=False, subprocess=True)
    assert res.code == 2 and res.err == message + "\n" and res.out == "", res


def _readme_commands() -> list[str]:
    """Every ``hoist ...`` command in the README's shell blocks, one per ``&&``/``;`` part (the
    lines that list alternatives with ``|`` or ``[...]`` are summaries, not commands)."""
    import re

    from tests.cli.helpers import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in re.split(r"\s*(?:&&|;)\s*", line):
                part = re.split(r"\s+[<>]\s*|\s+2?>\s*", part)[0].removesuffix(" &")
                if part.startswith("hoist ") and "[" not in part and " | " not in part and "$(" not in part:
                    out.append(part)
    return out


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_commands_parse(command: str) -> None:
    """Each documented command names a verb and only flags that verb has."""
    import argparse
    import importlib
    import shlex

    argv = shlex.split(command)[1:]
    assert argv and argv[0] in COMMANDS, command
    module = importlib.import_module(COMMANDS[argv[0]][0])
    parser = argparse.ArgumentParser(prog=f"hoist {argv[0]}", exit_on_error=False)
    module.add_arguments(parser)
    try:
        parser.parse_args(argv[1:])
    except (argparse.ArgumentError, SystemExit) as e:
        raise AssertionError(f"README: {command}: {e}") from None
