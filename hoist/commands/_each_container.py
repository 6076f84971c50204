"""What ``stop``, ``kill`` and ``rm`` share: apply an action to each named container, report
every failure in one line at the end (docker carries on past a bad name too)."""

from __future__ import annotations

from collections.abc import Callable

from hoist import paths
from hoist.errors import UserError


def for_each_container(refs: list[str], action: Callable[..., None]) -> int:
    """Call ``action(runtime, container)`` for each ref, printing the ref on success."""
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime

    runtime = Runtime(paths.hoist_root())
    failed = []
    for ref in refs:
        try:
            action(runtime, runtime.containers.get(ref))
            print(ref)
        except RuntimeFailure as e:
            failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0
