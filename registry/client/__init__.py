"""The registry client: authentication (Docker token auth and Basic), blob existence checks,
cross-repository mounts, monolithic and chunked uploads, parallel resumable verified downloads,
manifest negotiation by Accept and platform selection. It prints nothing: progress goes to a
callback (:mod:`registry.client.events`).

Modules: ``auth`` (the challenge/token flow, a pure generator), ``transport`` (aiohttp and
in-memory), ``client`` (one registry, one method per API operation), ``pull``, ``push``,
``events``, ``errors``.
"""
