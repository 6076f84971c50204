"""The test runner for the CLI: ``hoist.cli.main`` in-process behaves like ``python -m hoist.cli``
and leaves nothing of a call behind (environment, working directory, standard streams)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.cli.helpers import Hoist
from tests.images import distinct_busybox_image


@pytest.mark.parametrize("args", [
    ("images",),
    ("inspect", "nosuch:1"),                 # a user error: one line, its exit code
    ("tag", "--no-such-flag"),               # argparse: SystemExit(2) and its usage on stderr
    ("frobnicate",),                         # not a verb
    ("--version",),
    ("login", "--password-stdin", "-u", "u", "127.0.0.1:1"),   # reads stdin, then cannot connect
])
def test_in_process_matches_a_subprocess(hoist: Hoist, args: tuple[str, ...]) -> None:
    distinct_busybox_image(hoist.layout(), "registry.local:5000/team/app:1.0")
    inside = hoist(*args, ok=False, stdin="pw\n")
    outside = hoist(*args, ok=False, stdin="pw\n", subprocess=True)
    assert (inside.code, inside.out, inside.err) == (outside.code, outside.out, outside.err)


def test_a_call_leaves_nothing_behind(hoist: Hoist) -> None:
    before = dict(os.environ), os.getcwd(), (sys.stdin, sys.stdout, sys.stderr)
    hoist.env["HOIST_TEST_ONLY"] = "1"
    distinct_busybox_image(hoist.layout(), "a:1")
    archive = hoist("save", "a:1").out                       # to stdout (binary, through .buffer)
    assert archive and hoist("tag", "--bad", ok=False).code == 2
    assert (dict(os.environ), os.getcwd(), (sys.stdin, sys.stdout, sys.stderr)) == before
    assert "HOIST_TEST_ONLY" not in os.environ

