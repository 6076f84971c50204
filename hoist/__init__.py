"""hoist: build, ship and run containers without a Docker daemon."""

__version__ = "0.1.0"
