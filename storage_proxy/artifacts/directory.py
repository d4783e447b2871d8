"""Blobs as files under one directory: `<root>/<namespace>/<version>`, written as
`<version>.part` and renamed once complete and fsynced. Namespaces are user names (a DNS
label) and versions are hex the proxy made, so no name a client sends ever becomes a path.
The file calls run in threads: the event loop never waits for the disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

PART = ".part"


class DirectoryBlobs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"directory {root.resolve()}"

    def _path(self, namespace: str, version: str) -> Path:
        path = self.root / namespace / version
        if path.parent.parent != self.root or "/" in version or version.startswith("."):
            raise ValueError(f"not a blob name: {namespace!r}/{version!r}")  # never: names are ours
        return path

    async def create(self, namespace: str, version: str) -> _FileWriter:
        path = self._path(namespace, version)

        def start() -> IO[bytes]:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path.with_name(path.name + PART), "xb")

        return _FileWriter(path, await asyncio.to_thread(start))

    async def open(self, namespace: str, version: str, offset: int) -> _FileReader:
        path = self._path(namespace, version)

        def start() -> IO[bytes]:
            f = open(path, "rb")  # noqa: SIM115 (kept open; FileNotFoundError when gone)
            f.seek(offset)
            return f

        return _FileReader(await asyncio.to_thread(start))

    async def delete(self, namespace: str, version: str) -> None:
        path = self._path(namespace, version)

        def remove() -> None:
            for p in (path, path.with_name(path.name + PART)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

        await asyncio.to_thread(remove)

    async def blobs(self, min_age: float) -> AsyncIterator[tuple[str, list[str]]]:
        def namespaces() -> list[str]:
            try:
                return sorted(p.name for p in os.scandir(self.root) if p.is_dir())
            except FileNotFoundError:
                return []

        def old(namespace: str) -> list[str]:
            cutoff, out = time.time() - min_age, []
            with contextlib.suppress(FileNotFoundError), os.scandir(self.root / namespace) as it:
                for entry in it:
                    with contextlib.suppress(FileNotFoundError):
                        if entry.is_file() and entry.stat().st_mtime < cutoff:
                            out.append(entry.name.removesuffix(PART))
            return out

        for namespace in await asyncio.to_thread(namespaces):
            versions = await asyncio.to_thread(old, namespace)
            if versions:
                yield namespace, versions


class _FileWriter:
    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self.file = file

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.file.write, data)

    async def finish(self) -> None:
        def done() -> None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.file.name, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself survives a crash
            finally:
                os.close(directory)

        await asyncio.to_thread(done)

    async def abort(self) -> None:
        def remove() -> None:
            self.file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file.name)

        await asyncio.to_thread(remove)


class _FileReader:
    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    async def read(self, size: int) -> bytes:
        return await asyncio.to_thread(self.file.read, size)

    async def close(self) -> None:
        await asyncio.to_thread(self.file.close)
