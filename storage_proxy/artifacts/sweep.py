"""The sweep: remove blobs that no artifact uses and no live upload writes, left behind by a
proxy killed mid-upload or between a commit and removing the version it replaced. Each
server process sweeps every --artifact-sweep-seconds (with jitter, so replicas spread out);
removing a blob twice is harmless, and the look at Redis that decides (lua/artifact_orphans)
is atomic, so a blob being committed is never taken."""

from __future__ import annotations

import asyncio
import logging
import random

from storage_proxy import metrics
from storage_proxy.artifacts.blobs import BlobStore
from storage_proxy.artifacts.index import ArtifactIndex

log = logging.getLogger("storage_proxy")
BATCH = 200  # blobs asked about per script call
MIN_AGE = 60.0  # seconds since a blob was last written before the sweep looks at it


async def sweep_once(blobs: BlobStore, index: ArtifactIndex, min_age: float = MIN_AGE) -> int:
    """Remove the garbage blobs; how many."""
    removed = 0
    async for namespace, versions in blobs.blobs(min_age):
        for start in range(0, len(versions), BATCH):
            for version in await index.orphans(namespace, versions[start : start + BATCH]):
                await blobs.delete(namespace, version)
                removed += 1
    if removed:
        metrics.ARTIFACT_GARBAGE.inc(removed)
        log.info("artifact sweep: removed %d blobs no artifact uses", removed)
    return removed


async def sweep_forever(blobs: BlobStore, index: ArtifactIndex, every: float,
                        min_age: float = MIN_AGE) -> None:
    """sweep_once every `every` seconds (the first soon after start), until cancelled."""
    delay = random.uniform(1.0, 5.0)
    while True:
        await asyncio.sleep(delay)
        try:
            await sweep_once(blobs, index, min_age)
        except Exception as e:  # Redis or the store down for now: next time
            log.warning("artifact sweep failed (%s: %s); it runs again in %.0fs",
                        type(e).__name__, e, every)
        delay = every * random.uniform(0.8, 1.2)
