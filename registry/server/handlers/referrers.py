"""GET /v2/<name>/referrers/<digest>[?artifactType=] — the OCI 1.1 referrers API."""

from __future__ import annotations

import json

from aiohttp import web

from registry.server.handlers.common import FILTERS_HEADER, parse_digest, repo_name, store
from storage import mediatypes as mt


async def get_referrers(request: web.Request) -> web.Response:
    name = repo_name(request)
    subject = parse_digest(request.match_info["digest"])
    descriptors = await store(request).referrers(name, subject)
    headers = {}
    wanted = request.query.get("artifactType")
    if wanted:
        descriptors = [d for d in descriptors if d.artifact_type == wanted]
        headers[FILTERS_HEADER] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
            "manifests": [d.to_json() for d in sorted(descriptors, key=lambda d: str(d.digest))]}
    return web.Response(status=200, body=json.dumps(body).encode(), content_type=mt.OCI_INDEX,
                        headers=headers)
