"""``hoist create``: a new container from an image, made as ``run`` makes it but not started
(docker's ``create``): ``hoist start [-a]`` runs it; it is ``Created`` in ``ps -a`` until then."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.commands import run as run_cmd
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_cmd.add_arguments(parser, create=True)


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime, StartFailed
    from storage.fsutil import secure_store_root

    runtime = Runtime(secure_store_root(paths.hoist_root()))
    try:
        container = run_cmd.create_container(runtime, args)
    except StartFailed as e:
        raise UserError(str(e), exit_code=e.exit_code) from None
    except RuntimeFailure as e:
        raise UserError(str(e), exit_code=125) from None
    except OSError as e:
        raise UserError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), exit_code=125) from None
    print(container.id)
    return 0
