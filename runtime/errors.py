"""Runtime errors, from unpacking a layer to stopping a container.

::

    RuntimeFailure                  anything the runtime refuses or cannot do
    ├── UnpackError                 a layer cannot be applied
    │   ├── EscapeAttempt           an entry would write outside the target (.., a link, a symlink)
    │   ├── LayerTooLarge           more entries or bytes than the configured limit (tar bomb)
    │   └── LayerCorrupt            unreadable compression or tar, or a diff_id mismatch
    ├── ImageError                  the image cannot be found or run
    │   ├── ImageNotFound           no such reference in the local image store
    │   └── ImageConfigInvalid      no command, a relative workdir, a platform that is not there
    ├── ContainerError              container state and lifecycle
    │   ├── ContainerNotFound       no container by that name or id (prefix)
    │   ├── NameInUse               another container already has the name
    │   └── ContainerRunning        the operation needs a stopped container (or a running one)
    └── SetupError                  a mount, namespace, cgroup or volume could not be set up

Every message is one line naming what was wrong; the CLI turns these into ``UserError``.
"""

from __future__ import annotations


class Detached(Exception):
    """The user typed the detach keys (``runtime/tty.py``; here so that a run that is not
    attached to a terminal need not import the pty code to catch it)."""


class RuntimeFailure(Exception):
    """Base of every runtime error; ``exit_code`` is what ``hoist run`` reports (125, as docker)."""

    exit_code = 125


class UnpackError(RuntimeFailure):
    pass


class EscapeAttempt(UnpackError):
    pass


class LayerTooLarge(UnpackError):
    pass


class LayerCorrupt(UnpackError):
    pass


class ImageError(RuntimeFailure):
    pass


class ImageNotFound(ImageError):
    pass


class ImageConfigInvalid(ImageError):
    pass


class ContainerError(RuntimeFailure):
    pass


class ContainerNotFound(ContainerError):
    pass


class NameInUse(ContainerError):
    pass


class ContainerRunning(ContainerError):
    pass


class SetupError(RuntimeFailure):
    pass
