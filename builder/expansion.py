"""Which words of which instruction are expanded at dispatch, and the expansion itself.

BuildKit's rules, in one table (``EXPANDS``): ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR and ARG expand variables in the words listed; RUN expands
only its ``--mount`` values; CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER and ONBUILD are
left for the shell (or for a later build). COPY/ADD heredoc bodies are expanded unless the
delimiter was quoted; RUN heredoc bodies are never expanded by the frontend. ``COPY --from``
is not expanded (BuildKit resolves it before dispatch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from builder import keywords as kw
from builder.instructions import (
    Add,
    Arg,
    ArgDecl,
    Copy,
    Env,
    Expose,
    Instruction,
    KeyValue,
    Label,
    Run,
    SourceContent,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from builder.mounts import parse_mount
from builder.shell_lex import ShellLex

# keyword -> the fields whose words are expanded (documentation and tests read this).
EXPANDS: Mapping[str, tuple[str, ...]] = {
    kw.ADD: ("sources", "dest", "contents", "chown", "chmod", "checksum"),
    kw.ARG: ("args",),
    kw.COPY: ("sources", "dest", "contents", "chown", "chmod"),
    kw.ENV: ("pairs",),
    kw.EXPOSE: ("ports",),
    kw.FROM: ("base", "platform"),
    kw.LABEL: ("pairs",),
    kw.RUN: ("mounts",),
    kw.STOPSIGNAL: ("signal",),
    kw.USER: ("user",),
    kw.VOLUME: ("paths",),
    kw.WORKDIR: ("path",),
    kw.CMD: (),
    kw.ENTRYPOINT: (),
    kw.HEALTHCHECK: (),
    kw.MAINTAINER: (),
    kw.ONBUILD: (),
    kw.SHELL: (),
}

Expand = Callable[[str], str]


def expander(lex: ShellLex, env: Mapping[str, str]) -> tuple[Expand, Callable[[str], list[str]]]:
    """The single-word and word-splitting expansion functions for ``env``."""
    return (lambda word: lex.process_word(word, env)), (lambda word: lex.process_words(word, env))


def expand_instruction(instr: Instruction, lex: ShellLex, env: Mapping[str, str]) -> Instruction:
    """``instr`` with its expandable words expanded against ``env``; raises ExpansionError.

    ARG and ENV are expanded as a whole here; a dispatcher that needs each pair to see the
    pairs before it on the same line should expand pair by pair (see ``expand_pairs``).
    """
    word, words = expander(lex, env)
    match instr:
        case Copy() | Add():
            return _expand_copy(instr, word)
        case Env() | Label():
            return dataclasses.replace(instr, pairs=tuple(KeyValue(word(p.key), word(p.value)) for p in instr.pairs))
        case Arg():
            return dataclasses.replace(instr, args=tuple(
                ArgDecl(word(a.name), None if a.default is None else word(a.default)) for a in instr.args))
        case Expose():
            return dataclasses.replace(instr, ports=tuple(p for port in instr.ports for p in words(port)))
        case Volume():
            return dataclasses.replace(instr, paths=tuple(word(p) for p in instr.paths))
        case User():
            return dataclasses.replace(instr, user=word(instr.user))
        case Workdir():
            return dataclasses.replace(instr, path=word(instr.path))
        case StopSignal():
            return dataclasses.replace(instr, signal=word(instr.signal))
        case Run():
            return dataclasses.replace(instr, mounts=tuple(parse_mount(m.spec, word) for m in instr.mounts))
    return instr


def _expand_copy(instr: Copy | Add, word: Expand) -> Copy | Add:
    optional = lambda value: None if value is None else word(value)  # noqa: E731 - local shorthand
    sources = tuple(word(s) for s in instr.sources)
    contents = tuple(SourceContent(c.name, word(c.data) if c.expand else c.data, c.expand)
                     for c in instr.contents)
    if isinstance(instr, Add):
        return dataclasses.replace(instr, sources=sources, dest=word(instr.dest), contents=contents,
                                   chown=optional(instr.chown), chmod=optional(instr.chmod),
                                   checksum=optional(instr.checksum))
    return dataclasses.replace(instr, sources=sources, dest=word(instr.dest), contents=contents,
                               chown=optional(instr.chown), chmod=optional(instr.chmod))
