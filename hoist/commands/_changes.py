"""``commit -c`` and ``import -c``: Dockerfile instructions applied to an image config, through
the builder's own parser and dispatch (``builder.dispatch.dispatch`` with its ``CheckBackend``,
which runs nothing: WORKDIR sets the config only, as docker's ``--change`` does)."""

from __future__ import annotations

import copy
from typing import Any

from hoist.errors import UserError

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR")


def apply_changes(image: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """``image`` (an image config: ``config``, ``architecture``...) with ``changes`` applied to
    its ``config``; history is not touched (docker adds none for them)."""
    if not changes:
        return image
    from builder import instructions as ins
    from builder.dispatch import CheckBackend, StageState, _env_map, dispatch
    from builder.dockerfile import parse_dockerfile
    from builder.errors import BuilderError
    from builder.scope import Scope
    from builder.shell_lex import ShellLex

    allowed = (ins.Cmd, ins.Entrypoint, ins.Env, ins.Expose, ins.Label, ins.Onbuild, ins.User, ins.Volume,
               ins.Workdir)
    for change in changes:
        keyword = change.strip().split(None, 1)[0].upper() if change.strip() else ""
        if keyword not in ALLOWED:
            raise UserError(f"{keyword or 'an empty change'} is not a valid change command",
                            hint=f"one of {', '.join(ALLOWED)}")
    try:
        dockerfile = parse_dockerfile("FROM scratch\n" + "\n".join(changes) + "\n")
        stage = dockerfile.stages[0]
        state = StageState(None, Scope({}, {}), copy.deepcopy(image))  # type: ignore[arg-type]
        state.scope.env = _env_map(state.env_list())
        lex = ShellLex(dockerfile.escape)
        for instr in stage.instructions:
            if not isinstance(instr, allowed):
                raise UserError(f"{type(instr).__name__.upper()} is not a valid change command")
            dispatch(instr, state, lex, CheckBackend())
    except BuilderError as e:
        raise UserError(f"invalid change: {getattr(e, 'message', e)}") from None
    out = copy.deepcopy(image)
    out["config"] = state.image.get("config") or {}
    return out
