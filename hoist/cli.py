"""The hoist command line: one explicit command table, one module per verb.

Each module in ``hoist.commands`` has ``add_arguments(parser)`` and ``run(args) -> int``
(``run`` may be a coroutine function). Only the module of the verb being run is imported,
so ``hoist run`` does not pay for the registry server's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from typing import NoReturn

from hoist import __version__
from hoist.errors import UserError

class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (docker prints the error, not the whole usage) and
    docker's words for a boolean flag given a value it cannot read (``--sig-proxy=maybe``);
    exit status 2, as argparse's."""

    def error(self, message: str) -> NoReturn:
        flag, sep, value = message.partition(": ignored explicit argument ")
        if sep and flag.startswith("argument --"):
            message = (f'invalid argument "{value.strip(chr(39))}" for "{flag.removeprefix("argument ")}" flag: '
                       "expected true or false")
        self.exit(2, f"{self.prog}: error: {message}\n")


# verb -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("hoist.commands.build", "Build an image from a Dockerfile"),
    "push": ("hoist.commands.push", "Push an image to a registry"),
    "pull": ("hoist.commands.pull", "Pull an image from a registry"),
    "images": ("hoist.commands.images", "List local images"),
    "tag": ("hoist.commands.tag", "Give a local image another name"),
    "rmi": ("hoist.commands.rmi", "Remove local images"),
    "inspect": ("hoist.commands.inspect", "Show low-level information on containers and images"),
    "save": ("hoist.commands.save", "Write images to a tar archive"),
    "load": ("hoist.commands.load", "Load images from a tar archive"),
    "login": ("hoist.commands.login", "Store credentials for a registry"),
    "logout": ("hoist.commands.logout", "Forget credentials for a registry"),
    "run": ("hoist.commands.run", "Run a command in a new container"),
    "create": ("hoist.commands.create", "Create a new container (start runs it)"),
    "ps": ("hoist.commands.ps", "List containers"),
    "stop": ("hoist.commands.stop", "Stop running containers"),
    "kill": ("hoist.commands.kill", "Send a signal to running containers"),
    "rm": ("hoist.commands.rm", "Remove containers"),
    "logs": ("hoist.commands.logs", "Show a container's output"),
    "exec": ("hoist.commands.exec", "Run a command in a running container"),
    "rename": ("hoist.commands.rename", "Rename a container"),
    "network": ("hoist.commands.network", "Manage networks (create, ls, inspect, rm, connect, disconnect, prune)"),
    "port": ("hoist.commands.port", "List a container's published ports"),
    "start": ("hoist.commands.start", "Start stopped containers"),
    "restart": ("hoist.commands.restart", "Restart containers"),
    "wait": ("hoist.commands.wait", "Wait for containers to exit; print their exit codes"),
    "pause": ("hoist.commands.pause", "Freeze every process of containers"),
    "unpause": ("hoist.commands.unpause", "Thaw paused containers"),
    "update": ("hoist.commands.update", "Change the limits and restart policy of containers"),
    "attach": ("hoist.commands.attach", "Attach to a running container (its TTY, or its output)"),
    "registry": ("hoist.commands.registry", "Run the OCI registry server"),
    "volume": ("hoist.commands.volume", "Manage named volumes (create, ls, inspect, rm, prune)"),
    "commit": ("hoist.commands.commit", "Make an image of a container's changes"),
    "cp": ("hoist.commands.cp", "Copy files between a container and the host"),
    "diff": ("hoist.commands.diff", "Show a container's file system changes"),
    "export": ("hoist.commands.export", "Write a container's file system as a tar"),
    "import": ("hoist.commands.import_", "Make an image from a root file system tarball"),
    "top": ("hoist.commands.top", "Show a container's processes"),
    "stats": ("hoist.commands.stats", "Show containers' CPU, memory, network, block I/O and PIDs"),
    "container": ("hoist.commands.container", "Manage containers (prune)"),
    "image": ("hoist.commands.image", "Manage images (prune)"),
    "compose": ("hoist.commands.compose", "Run multi-container applications from compose files"),
    "builder": ("hoist.commands.builder", "Manage the build cache (prune)"),
    "system": ("hoist.commands.system", "Show disk usage (df); remove what nothing uses (prune)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hoist COMMAND [OPTIONS]", "", "Commands:"]
    lines += [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in COMMANDS.items()]
    lines += ["", "Run 'hoist COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-v", "--version", "version"):
        print(f"hoist {__version__}")
        return 0
    verb = argv[0]
    if verb not in COMMANDS:
        print(f"hoist: '{verb}' is not a hoist command (see 'hoist --help')", file=sys.stderr)
        return 2
    module_name, summary = COMMANDS[verb]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            print(f"hoist: '{verb}' is not available in this build", file=sys.stderr)
            return 2
        raise
    parser = Parser(prog=f"hoist {verb}", description=summary)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        result = module.run(args)
        # types, not inspect: inspect costs `hoist run` ~5 ms of imports (ast, dis, tokenize).
        if isinstance(result, types.CoroutineType):
            import asyncio  # only for async verbs: it costs `hoist run` ~35 ms of start-up

            result = asyncio.run(result)
        sys.stdout.flush()  # inside the try: a reader that went away is a BrokenPipeError here
        return int(result or 0)
    except UserError as e:
        print(f"hoist {verb}: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # `hoist save IMG | head -c1`: the reader left. Point stdout at /dev/null so the
        # interpreter's own flush at exit does not fail a second time.
        _silence_stdout()
        print(f"hoist {verb}: the output was closed before everything was written (broken pipe)",
              file=sys.stderr)
        return 1
    except OSError as e:
        # An everyday I/O failure the verb did not name itself (a full disk, a read-only or
        # missing directory): one line naming the error and the path, no traceback.
        print(f"hoist {verb}: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hoist {verb}: interrupted", file=sys.stderr)
        return 130


def describe_os_error(e: OSError) -> str:
    """``No space left on device: /path`` (with the second path of a rename, if any)."""
    text = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        text += f": {e.filename}"
    if e.filename2 is not None:
        text += f" -> {e.filename2}"
    return text


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real descriptor (in-process test runs)
        pass


def entry() -> None:
    """The process's entry point (the ``hoist`` script, ``python -m hoist.cli``): ``main``, then
    the exit. When main has returned and the main thread is the only one left, the atexit
    handlers run (a build's owner lock, finalizers), stdout and stderr are flushed, and the
    process ends with ``os._exit``: the interpreter's own teardown, module by module with a
    garbage collection each, took 0.2 s after a build of 3,000 files (0.01 s this way) to free
    memory the kernel frees anyway. With another thread left, the usual exit waits for it.
    Tests that call ``main`` in process never get here."""
    code = main()
    import threading

    if threading.active_count() > 1:
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 120          # as the interpreter's exit when stdout cannot be flushed
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


if __name__ == "__main__":
    entry()
