"""hoist's compose: the Compose Specification model (``loader``) and the engine over runtime/ and
the builder (``engine``). See README.md here and docs/ARCHITECTURE.md."""
