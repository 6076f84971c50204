"""``hoist build``: for now only ``--check``, which parses and validates a Dockerfile.

``--check`` reads the Dockerfile (``-f``, default ``CONTEXT/Dockerfile``) and the
``.dockerignore`` that applies to it, and prints every error as ``FILE:LINE: message``
(exit 1), or a one-line summary (exit 0).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from builder.check import CheckReport, check_dockerfile
from builder.dockerignore import find_ignore_file, load_patterns
from builder.errors import DockerignoreError
from hoist.errors import UserError

DEFAULT_DOCKERFILE = "Dockerfile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("context", metavar="CONTEXT", help="build context directory")
    parser.add_argument("-f", "--file", dest="file", help="Dockerfile path (default: CONTEXT/Dockerfile)")
    parser.add_argument("--target", help="build only the stages this stage needs")
    parser.add_argument("--build-arg", dest="build_args", action="append", default=[], metavar="KEY[=VALUE]",
                        help="set a build argument (KEY alone takes the value from the environment)")
    parser.add_argument("--platform", help="target platform, e.g. linux/arm64")
    parser.add_argument("-t", "--tag", dest="tags", action="append", default=[], metavar="NAME[:TAG]",
                        help="name the image (building is not available yet: use --check)")
    parser.add_argument("--check", action="store_true", help="parse and validate only; build nothing")


def run(args: argparse.Namespace) -> int:
    if not args.check:
        raise UserError("only 'hoist build --check' is implemented so far; building images is not available yet")
    context = Path(args.context)
    if not context.is_dir():
        raise UserError(f"build context {str(context)!r} is not a directory")
    dockerfile = Path(args.file) if args.file else context / DEFAULT_DOCKERFILE
    data = _read(dockerfile)
    report = check_dockerfile(data, target=args.target, build_args=parse_build_args(args.build_args),
                              platform=args.platform)
    ignore_errors = _check_dockerignore(context, dockerfile)
    return _print_report(str(dockerfile), report, ignore_errors)


def parse_build_args(values: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs; a bare ``KEY`` takes its value from the environment, if set."""
    result: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise UserError(f"invalid --build-arg {item!r}: expected KEY=VALUE")
        if eq:
            result[key] = value
        elif key in os.environ:
            result[key] = os.environ[key]
    return result


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"Dockerfile {str(path)!r} not found", hint="pass its path with -f") from None
    except IsADirectoryError:
        raise UserError(f"Dockerfile {str(path)!r} is a directory", hint="pass the file's path with -f") from None
    except OSError as e:
        raise UserError(f"cannot read Dockerfile {str(path)!r}: {e.strerror}") from None


def _check_dockerignore(context: Path, dockerfile: Path) -> list[tuple[str, DockerignoreError]]:
    path = find_ignore_file(context, dockerfile)
    if path is None:
        return []
    try:
        load_patterns(path.read_bytes())
    except DockerignoreError as e:
        return [(str(path), e)]
    except OSError as e:
        raise UserError(f"cannot read {str(path)!r}: {e.strerror}") from None
    return []


def _print_report(name: str, report: CheckReport, ignore_errors: list[tuple[str, DockerignoreError]]) -> int:
    for error in report.errors:
        where = f"{name}:{error.line}" if error.line is not None else name
        print(f"{where}: {error.message}", file=sys.stderr)
    for path, ignore_error in ignore_errors:
        where = f"{path}:{ignore_error.line}" if ignore_error.line is not None else path
        print(f"{where}: {ignore_error.message}", file=sys.stderr)
    for warning in report.warnings:
        # Build checks print as BuildKit prints them ("WARN: Rule: message (line N)").
        print(warning if warning.startswith("WARN: ") else f"{name}: warning: {warning}", file=sys.stderr)
    if report.errors or ignore_errors:
        return 1
    assert report.dockerfile is not None and report.graph is not None
    stages = len(report.dockerfile.stages)
    needed = len(report.graph.order)
    target = report.graph.target_stage.display_name
    print(f"{name}: ok ({stages} stage{'s' if stages != 1 else ''}, target {target} needs {needed})")
    return 0
