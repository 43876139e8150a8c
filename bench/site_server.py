"""One process serving a small HTML page on N loopback addresses, for the sites benchmark.

    python bench/site_server.py --count 2000 --port PORT      # prints "ready" when every address listens

Addresses are 127.1.X.Y (X = i // 250, Y = i % 250 + 1). The server is a bare asyncio protocol so that it costs
as little CPU as possible next to the two tools being measured; it answers every request with
"Connection: close", like a site checked on a new connection.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

BODY = b"<html><head><title>OPD</title></head><body><h1>Selamat datang</h1>" + b"x" * 2048 + b"</body></html>"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + BODY)


def address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


class Page(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


async def serve(count: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Page, address(i), port, backlog=512) for i in range(count)]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.count, args.port))


if __name__ == "__main__":
    main()
