"""Errors raised while turning a build step's output into a layer blob (``builder/layers.py``).

::

    BuilderError                    (builder/errors.py)
    └── LayerError                  a layer blob cannot be built; the message names the path
        ├── LayerInputInvalid       the request itself is wrong: an unknown compression or level,
        │                           a path with '..' or a reserved '.wh.' name, a duplicate entry,
        │                           a bad mode, uid or SOURCE_DATE_EPOCH
        ├── LayerSourceError        the upper dir or a source file is missing, unreadable, of a kind a
        │                           layer cannot hold, or changed while it was being read
        └── LayerOutputError        the blob cannot be written to the destination directory

The layer functions raise only these; an OSError or a runtime error escaping them is a bug.
"""

from __future__ import annotations

from builder.errors import BuilderError


class LayerError(BuilderError):
    """Base of every error raised while building a layer blob."""


class LayerInputInvalid(LayerError):
    """The arguments cannot describe a valid layer."""


class LayerSourceError(LayerError):
    """What the layer is made from cannot be read as it is."""


class LayerOutputError(LayerError):
    """The blob cannot be written where it was asked for."""
