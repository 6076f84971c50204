"""Distribution's ``storage.maintenance.uploadpurging``: drop uploads abandoned for longer than
``age`` (by their ``startedat``, in every repository, on every driver) and the temporary files
a crashed writer left behind. The registry runs it every ``interval`` (``registry/server/app.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from storage.registry import RegistryStore


@dataclass
class PurgeReport:
    uploads: list[tuple[str, str]]
    temporaries: int


async def purge_abandoned(store: RegistryStore, age: float, dry_run: bool = False,
                          log: logging.Logger | None = None) -> PurgeReport:
    """One purge pass; with ``dry_run`` only report. Storage errors propagate."""
    uploads = await store.purge_uploads(age, dry_run=dry_run)
    temporaries = await store.driver.clean_temporaries(age, dry_run=dry_run)
    if log is not None:
        verb = "would purge" if dry_run else "purged"
        for name, upload_id in uploads:
            log.info("%s upload %s in %s (started more than %.0fs ago)", verb, upload_id, name, age)
        if temporaries:
            log.info("%s %d temporary files older than %.0fs", verb, temporaries, age)
    return PurgeReport(uploads, temporaries)
