"""A TCP relay for fault tests: put it between a client and a proxy, or a proxy and Redis, and
make the network misbehave on command.

    relay = Relay(("127.0.0.1", proxy.port)).start()   # relay.endpoint -> the proxy
    relay.stall(downstream=True)    # hold every reply (requests still go through)
    relay.reset()                   # RST every open connection (SO_LINGER 0)
    relay.drop()                    # close every open connection cleanly (FIN)
    relay.refuse = True             # new connections are reset at once
    relay.flow()                    # forward everything again

It runs its own asyncio loop in a daemon thread; every command is safe to call from tests.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from contextlib import suppress
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Relay:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.refuse = False
        self.accepted = 0  # connections accepted so far
        self.bytes_up = 0  # client -> target, forwarded
        self.bytes_down = 0  # target -> client, forwarded
        self.held_up = 0  # client -> target, read but held by a stall
        self._loop = asyncio.new_event_loop()
        self._links: set[_Link] = set()
        self._up_open: asyncio.Event | None = None
        self._down_open: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="relay")
        self._server: asyncio.AbstractServer | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    # -- commands (thread-safe) --------------------------------------------------------------

    def start(self) -> Relay:
        self._thread.start()
        self._run(self._start())
        return self

    def close(self) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def stall(self, upstream: bool = True, downstream: bool = True) -> None:
        """Stop forwarding in the given directions; held bytes go on after flow()."""
        self._run(self._set(not upstream, not downstream))

    def flow(self) -> None:
        self._run(self._set(True, True))

    def drop(self) -> int:
        """Close every open connection with a FIN; returns how many."""
        return self._run(self._cut(rst=False))

    def reset(self) -> int:
        """Abort every open connection with an RST; returns how many."""
        return self._run(self._cut(rst=True))

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # -- inside the loop ---------------------------------------------------------------------

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        self._up_open, self._down_open = asyncio.Event(), asyncio.Event()
        self._up_open.set()
        self._down_open.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut(rst=True)

    async def _set(self, up: bool, down: bool) -> None:
        assert self._up_open is not None and self._down_open is not None
        for event, is_open in ((self._up_open, up), (self._down_open, down)):
            event.set() if is_open else event.clear()

    async def _cut(self, rst: bool) -> int:
        links = list(self._links)
        for link in links:
            self._close_link(link, rst)
        return len(links)

    def _close_link(self, link: _Link, rst: bool) -> None:
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        for writer in (link.client, link.upstream):
            if rst:
                _rst(writer)
            else:
                writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refuse:
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _rst(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        assert self._up_open is not None and self._down_open is not None
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, self._up_open, up=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, self._down_open, up=False)),
        ]

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, gate: asyncio.Event, up: bool) -> None:
        try:
            while data := await reader.read(65536):
                held = len(data) if up else 0
                self.held_up += held
                try:
                    await gate.wait()  # a stall holds the data here (TCP backs up behind it)
                finally:
                    self.held_up -= held
                writer.write(data)
                await writer.drain()
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return
        # One side finished or failed: finish the other the same way.
        if link in self._links:
            self._close_link(link, rst=False)
