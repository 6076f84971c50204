"""Content-addressed storage: digests, media types, manifests, drivers, layouts.

Nothing here knows about HTTP or Dockerfiles.
"""
