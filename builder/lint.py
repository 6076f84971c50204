"""BuildKit's build checks (the Dockerfile linter): warnings about a Dockerfile that builds but
probably not as its author meant. Rule names, messages and URLs are BuildKit's
(https://docs.docker.com/reference/build-checks/).

``# check=skip=Rule1,Rule2`` (or ``skip=all``) turns rules off; ``# check=error=true`` makes
the remaining ones fail the build (``apply_checks`` turns them into errors then). BuildKit's
experimental rules (``EXPERIMENTAL``) run only when ``# check=experimental=Rule1,...`` (or
``experimental=all``) names them, and then whatever ``skip`` says, as BuildKit's linter does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.dockerfile import Dockerfile
from builder.dockerignore import PatternMatcher, go_clean
from builder.errors import DockerfileError
from builder.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    Maintainer,
    Workdir,
)

if TYPE_CHECKING:
    from builder.check import CheckReport
    from builder.stages import BuildGraph

_Add = Callable[["BuildCheck"], None]

URL = "https://docs.docker.com/go/dockerfile/rule/{}/"


@dataclass(frozen=True, slots=True)
class BuildCheck:
    """One rule violation: ``rule`` (e.g. JSONArgsRecommended), BuildKit's message, the line."""

    rule: str
    message: str
    line: int | None

    @property
    def url(self) -> str:
        slug = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", self.rule).lower()
        return URL.format(slug)

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"WARN: {self.rule}: {self.message}{where}"


@dataclass(frozen=True, slots=True)
class CheckOptions:
    skip: frozenset[str]
    skip_all: bool
    error: bool
    experimental: frozenset[str] = frozenset()
    experimental_all: bool = False

    def reports(self, rule: str) -> bool:
        """Whether a violation of ``rule`` is reported (BuildKit's ``Linter.Run``)."""
        if rule in EXPERIMENTAL:
            return self.experimental_all or rule in self.experimental
        return not self.skip_all and rule not in self.skip


def check_options(dockerfile: Dockerfile) -> CheckOptions:
    """The ``# check=`` directive (already validated by the parser)."""
    skip: set[str] = set()
    experimental: set[str] = set()
    error = False
    for part in dockerfile.directives.get("check", "").split(";"):
        key, _, value = part.strip().partition("=")
        key = key.strip().lower()
        if key == "skip":
            skip |= {r.strip() for r in value.split(",") if r.strip()}
        elif key == "experimental":
            experimental |= {r.strip() for r in value.split(",") if r.strip()}
        elif key == "error":
            error = value.strip() in ("1", "t", "T", "TRUE", "true", "True")
    return CheckOptions(frozenset(skip), "all" in {s.lower() for s in skip}, error, frozenset(experimental),
                        "all" in {s.lower() for s in experimental})


_SECRET = re.compile(r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)")
_SECRET_ALLOW = re.compile(r"(?i)public")
_RESERVED = ("scratch", "context")
_EMPTY_CONTINUATION = re.compile(r"^line (\d+): empty continuation line")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
_PREDEFINED = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM",
    "TARGETOS", "TARGETARCH", "TARGETVARIANT", "TARGETSTAGE", "BUILDKIT_SYNTAX",
})


def _keyword(instr: Instruction) -> str:
    """The instruction keyword as written (its case kept)."""
    text = instr.original.lstrip()
    return text.split(None, 1)[0] if text else instr.keyword


def lint(dockerfile: Dockerfile, graph: BuildGraph | None = None) -> list[BuildCheck]:
    """Every build-check violation, in line order, skipped rules left out."""
    found: list[BuildCheck] = []
    add = found.append
    everything: list[Instruction] = [*dockerfile.meta_args]
    for stage in dockerfile.stages:
        everything.append(stage.header)
        everything.extend(stage.instructions)

    # ConsistentInstructionCasing: the majority case (upper or lower) wins; mixed case is wrong.
    words = [_keyword(i) for i in everything]
    upper = sum(1 for w in words if w.isupper())
    lower = sum(1 for w in words if w.islower())
    majority = "uppercase" if upper >= lower else "lowercase"
    for instr, word in zip(everything, words, strict=True):
        if (majority == "uppercase" and not word.isupper()) or (majority == "lowercase" and not word.islower()):
            add(BuildCheck("ConsistentInstructionCasing",
                           f"Command '{word}' should match the case of the command majority ({majority})", instr.line))

    for warning in dockerfile.warnings:
        m = _EMPTY_CONTINUATION.match(warning)
        if m:
            add(BuildCheck("NoEmptyContinuation", "Empty continuation line", int(m.group(1))))

    meta_names = {d.name for a in dockerfile.meta_args for d in a.args}
    meta_defaults = {d.name: d.default for a in dockerfile.meta_args for d in a.args}
    for a in dockerfile.meta_args:
        _secrets(a, add)
    seen_names: dict[str, int] = {}
    for stage in dockerfile.stages:
        header = stage.header
        _from_checks(header, _keyword(header), meta_names, meta_defaults, seen_names, add)
        counts: Counter[str] = Counter()
        for instr in stage.instructions:
            _instruction_checks(instr, add)
            if isinstance(instr, (Cmd, Entrypoint, Healthcheck)):
                counts[instr.keyword] += 1
        for instr in stage.instructions:
            if isinstance(instr, (Cmd, Entrypoint, Healthcheck)) and counts[instr.keyword] > 1:
                counts[instr.keyword] -= 1  # every one but the last
                add(BuildCheck("MultipleInstructionsDisallowed",
                               f"Multiple {instr.keyword.upper()} instructions should not be used in the same "
                               "stage because only the last one will be used", instr.line))

    _definition_descriptions(dockerfile, add)
    options = check_options(dockerfile)
    return sorted((c for c in found if options.reports(c.rule)), key=lambda c: (c.line or 0, c.rule))


def _from_checks(header: From, word: str, meta_names: set[str], meta_defaults: dict[str, str | None],
                 seen: dict[str, int], add: _Add) -> None:
    text = header.original
    m = re.search(r"\s(as)\s+(\S+)\s*$", text, re.IGNORECASE)
    if m:
        as_word, raw_name = m.group(1), m.group(2)
        if (word.isupper() and not as_word.isupper()) or (word.islower() and not as_word.islower()):
            add(BuildCheck("FromAsCasing", f"'{as_word}' and '{word}' keywords' casing do not match", header.line))
        if raw_name != raw_name.lower():
            add(BuildCheck("StageNameCasing", f"Stage name '{raw_name}' should be lowercase", header.line))
        name = raw_name.lower()
        if name in _RESERVED:
            add(BuildCheck("ReservedStageName",
                           f"Stage name should not use the same name as reserved stage \"{name}\"", header.line))
        if name in seen:
            add(BuildCheck("DuplicateStageName",
                           f"Duplicate stage name \"{name}\", stage names should be unique", header.line))
        seen[name] = header.line
    platform = header.platform
    if platform is not None:
        if platform == "$TARGETPLATFORM" or platform == "${TARGETPLATFORM}":
            add(BuildCheck("RedundantTargetPlatform",
                           "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the "
                           "default behavior", header.line))
        elif "$" not in platform:
            add(BuildCheck("FromPlatformFlagConstDisallowed",
                           f"FROM --platform flag should not use constant value \"{platform}\"", header.line))
    for field_text in (header.base, platform or ""):
        for var in _VAR.finditer(field_text):
            name = var.group(1) or var.group(2)
            if name not in meta_names and name not in _PREDEFINED:
                add(BuildCheck("UndefinedArgInFrom", f"FROM argument '{name}' is not declared", header.line))
    if "$" in header.base and all((v.group(1) or v.group(2)) in meta_names for v in _VAR.finditer(header.base)):
        expanded = _VAR.sub(lambda v: meta_defaults.get(v.group(1) or v.group(2)) or "", header.base)
        if not _valid_image_name(expanded):
            add(BuildCheck("InvalidDefaultArgInFrom",
                           f"Default value for ARG {header.base} results in empty or invalid base image name",
                           header.line))


_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
                   r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")


def _valid_image_name(ref: str) -> bool:
    if not ref:
        return False
    host, slash, rest = ref.partition("/")
    if slash and ("." in host or ":" in host or host == "localhost"):
        ref = rest
    return bool(_NAME.match(ref))


def _instruction_checks(instr: Instruction, add: _Add) -> None:
    word = _keyword(instr)
    match instr:
        case Env():
            body = instr.original.lstrip()[len(word):].strip()
            if body and not re.match(r"^[^\s=]+=", body):
                add(BuildCheck("LegacyKeyValueFormat",
                               f"\"{word.upper()} key=value\" should be used instead of legacy "
                               f"\"{word.upper()} key value\" format", instr.line))
            _secrets(instr, add)
        case Arg():
            _secrets(instr, add)
        case Expose():
            for port in instr.ports:
                if ":" in port:
                    add(BuildCheck("ExposeInvalidFormat",
                                   "EXPOSE instruction should not define an IP address or host-port mapping, found "
                                   f"'{port}'", instr.line))
                _, slash, proto = port.partition("/")
                if slash and proto != proto.lower():
                    add(BuildCheck("ExposeProtoCasing",
                                   f"Defined protocol '{port}' in EXPOSE instruction should be lowercase", instr.line))
        case _:
            pass


def _secrets(instr: Arg | Env, add: _Add) -> None:
    names = [d.name for d in instr.args] if isinstance(instr, Arg) else [p.key for p in instr.pairs]
    for name in names:
        if _SECRET.search(name) and not _SECRET_ALLOW.search(name):
            add(BuildCheck("SecretsUsedInArgOrEnv",
                           f"Do not use ARG or ENV instructions for sensitive data ({instr.keyword.upper()} "
                           f"\"{name}\")", instr.line))


# -- the rules that need the stage's state, reported by builder/dispatch.py as it dispatches ------

def json_args_recommended(instr: Cmd | Entrypoint) -> BuildCheck:
    """A shell-form CMD/ENTRYPOINT while the image has no SHELL (BuildKit checks at dispatch)."""
    return BuildCheck("JSONArgsRecommended", f"JSON arguments recommended for {instr.keyword.upper()} to prevent "
                      "unintended behavior related to OS signals", instr.line)


def maintainer_deprecated(instr: Maintainer) -> BuildCheck:
    return BuildCheck("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label",
                      instr.line)


def workdir_relative_path(instr: Workdir, path: str) -> BuildCheck:
    """A relative WORKDIR before any absolute one in the stage (``path`` as expanded)."""
    return BuildCheck("WorkdirRelativePath",
                      f"Relative workdir \"{path}\" can have unexpected results if the base image changes", instr.line)


def apply_checks(report: CheckReport, dispatched: Sequence[BuildCheck] = ()) -> None:
    """Add the build checks to a check report: the static ones (``lint``) and those the
    dispatcher found (``dispatched``), as warnings, or errors under ``# check=error=true``."""
    if report.dockerfile is None:
        return
    options = check_options(report.dockerfile)
    extra = [c for c in dispatched if options.reports(c.rule)]
    # Deduplicated in order (not as a set): ties on a line keep the order they were found in.
    checks = sorted(dict.fromkeys([*lint(report.dockerfile, report.graph), *extra]),
                    key=lambda c: (c.line or 0, c.rule))
    report.checks = checks
    if check_options(report.dockerfile).error:
        report.errors += [DockerfileError(f"{c.rule}: {c.message}", c.line) for c in checks]
    else:
        report.warnings += [str(c) for c in checks]


# -- UndefinedVar, CopyIgnoredFile, InvalidDefinitionDescription ------------------------------------

# BuildKit's experimental rules: reported only when ``# check=experimental=`` names them.
EXPERIMENTAL = frozenset({"CopyIgnoredFile", "InvalidDefinitionDescription"})
# Build arguments BuildKit reads itself, never reported as undefined (its ``nonEnvArgs``).
_NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})


def _definition_descriptions(dockerfile: Dockerfile, add: _Add) -> None:
    """InvalidDefinitionDescription: the comment right above ``ARG name`` or ``FROM x AS name``
    is that definition's description, so it must start with the name (the last comment line's
    first space-separated word, as BuildKit splits it)."""
    for instr in [*dockerfile.meta_args, *(i for stage in dockerfile.stages
                                           for i in (stage.header, *stage.instructions))]:
        comments = instr.loc.comments
        if not comments:
            continue
        if isinstance(instr, Arg):
            what, keys = "ARG", [d.name for d in instr.args]
        elif isinstance(instr, From) and instr.name:
            what, keys = "FROM", [instr.name]
        else:
            continue
        if not keys or comments[-1].split(" ")[0] in keys:
            continue
        example = keys[0] if len(keys) == 1 else "<arg_key>"
        add(BuildCheck("InvalidDefinitionDescription",
                       f"Comment for {what} should follow the format: `# {example} <description>`", instr.line))


class MissedLookups(Mapping[str, str]):
    """A view of a stage's scope for the word lexer that notes every variable it looked up and
    did not find (BuildKit's ``ProcessWord`` "unmatched" set), for UndefinedVar."""

    def __init__(self, scope: Mapping[str, str]) -> None:
        self.scope = scope
        self.missed: list[str] = []

    def __contains__(self, key: object) -> bool:
        found = key in self.scope
        if not found and isinstance(key, str) and key not in self.missed:
            self.missed.append(key)
        return found

    def __getitem__(self, key: str) -> str:
        return self.scope[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scope)

    def __len__(self) -> int:
        return len(self.scope)


def undefined_vars(instr: Instruction, missed: Sequence[str], declared: Iterable[str],
                   known: Sequence[str]) -> list[BuildCheck]:
    """UndefinedVar for the variables ``instr``'s expansion looked up in vain: not those the
    stage declares with ARG (set or not), nor BuildKit's own; the suggestion is the closest
    ``known`` name by edit distance under 3, as BuildKit's ``suggest.Search`` picks it."""
    declared = set(declared)
    out = []
    for name in missed:
        if name in declared or name in _NON_ENV_ARGS:
            continue
        match = _suggest(name, known)
        message = f"Usage of undefined variable '${name}'" + (f" (did you mean ${match}?)" if match else "")
        out.append(BuildCheck("UndefinedVar", message, instr.line))
    return out


def _suggest(value: str, options: Sequence[str]) -> str:
    best, match = 3, ""
    for option in options:
        if option == value:
            return ""
        distance = _levenshtein(value, option)
        if distance < best:
            best, match = distance, option
    return match


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def copy_ignored_files(dockerfile: Dockerfile, ignore: PatternMatcher) -> list[BuildCheck]:
    """CopyIgnoredFile: a COPY or ADD source from the build context (no ``--from``) that the
    ``.dockerignore`` excludes, itself or through a parent. As BuildKit, nothing is said when the
    patterns have exclusions (``!``: a file may be re-included under an ignored directory).
    Sources that still hold a variable are left alone (BuildKit checks them expanded); so are
    URLs and heredocs."""
    if ignore.has_exclusions:
        return []
    out = []
    for stage in dockerfile.stages:
        for instr in stage.instructions:
            if not isinstance(instr, (Copy, Add)) or (isinstance(instr, Copy) and instr.from_stage):
                continue
            for source in instr.sources:
                if "$" in source or "://" in source or source.startswith("git@"):
                    continue
                cleaned = go_clean(source)
                if ignore.matches(cleaned):
                    out.append(BuildCheck("CopyIgnoredFile", f"Attempting to {instr.keyword.capitalize()} file "
                                          f"{_go_quote(cleaned)} that is excluded by .dockerignore", instr.line))
    return out


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text of a path."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
