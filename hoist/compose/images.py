"""Building and pulling a service's image with hoist's own verbs (``hoist.commands.build`` and
``hoist.commands.pull``, called in process): the same checks, progress and errors as
``hoist build`` and ``hoist pull``. What they print on stdout (the image id, the name) goes to
the compose command's stderr with their progress."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hoist.compose.errors import ComposeError
from hoist.errors import UserError

if TYPE_CHECKING:
    from hoist.compose.loader import Project


def build_service(project: Project, service: str, tag: str, no_cache: bool, pull: bool, err: TextIO) -> None:
    from hoist.commands import build

    spec = project.services[service]["build"]
    context = spec["context"]
    if "://" in context or context.startswith("git@"):
        raise ComposeError(f"a remote build context ({context}) is not supported by hoist",
                           where=f'service "{service}": build.context')
    with tempfile.TemporaryDirectory(prefix="hoist-compose-") as tmp:
        if "dockerfile_inline" in spec:
            dockerfile = Path(tmp) / "Dockerfile"
            dockerfile.write_text(spec["dockerfile_inline"])
        else:
            dockerfile = Path(context) / spec.get("dockerfile", "Dockerfile")
        network = spec.get("network") or "host"
        if network not in ("host", "none", "default"):
            raise ComposeError(f"build network {network!r} is not supported by hoist (host or none)",
                               where=f'service "{service}": build.network')
        # build's own defaults first, so a flag build gains (--ssh, ...) needs nothing here
        parser = argparse.ArgumentParser()
        build.add_arguments(parser)
        args = parser.parse_args([str(context)])
        vars(args).update(
            context=context, file=str(dockerfile), target=spec.get("target"),
            build_args=[f"{k}={v}" for k, v in (spec.get("args") or {}).items() if v is not None],
            platform=None, tags=[tag], check=False, no_cache=no_cache or bool(spec.get("no_cache")),
            pull=pull or bool(spec.get("pull")),
            labels=[f"{k}={v}" for k, v in (spec.get("labels") or {}).items()],
            format="oci", compression="gzip", network="host" if network == "default" else network,
            progress="plain", quiet=False, iidfile=None, secrets=[])
        try:
            with contextlib.redirect_stdout(err):
                code = build.run(args)
        except UserError as e:
            raise ComposeError(f"build failed: {e}", where=f'service "{service}": build') from None
    if code != 0:
        raise ComposeError("build failed (the error is above)", where=f'service "{service}": build')


def pull_image(ref: str, err: TextIO) -> None:
    import asyncio

    from hoist.commands import pull
    from registry.client.pull import DEFAULT_CONCURRENCY

    args = argparse.Namespace(ref=ref, platform=None, insecure=False,
                              max_concurrent_downloads=DEFAULT_CONCURRENCY, quiet=True)
    try:
        with contextlib.redirect_stdout(err):
            asyncio.run(pull.run(args))
    except UserError as e:
        raise ComposeError(f"cannot pull {ref}: {e}") from None


def push_image(ref: str, err: TextIO) -> None:
    import asyncio

    from hoist.commands import push
    from registry.client.push import DEFAULT_CONCURRENCY

    args = argparse.Namespace(ref=ref, platform=None, insecure=False,
                              max_concurrent_uploads=DEFAULT_CONCURRENCY, quiet=False)
    try:
        with contextlib.redirect_stdout(err):
            asyncio.run(push.run(args))
    except UserError as e:
        raise ComposeError(f"cannot push {ref}: {e}") from None
