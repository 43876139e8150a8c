"""A fakepve with N guests and an API token, served in its own process for the Proxmox benchmark.

    python bench/pve_server.py --guests 2000 --host 127.0.40.1 --cert C --key K --token-file F --count-file N

Prints "ready https://HOST:PORT" when listening. On SIGUSR1 it writes the number of API requests seen so
far to the count file (the benchmark reads it before and after each scrape).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from fakepve.server import FakePve

TOKEN_ID = "bench@pve!collector"


async def serve(args: argparse.Namespace, token: str) -> None:
    pve = FakePve(user="root@pam", password="secret", host=args.host, port=0)
    pve.time_scale = 0
    pve.max_requests = 10_000_000
    pve.apitokens[TOKEN_ID] = token
    nodes = [f"pve{i}" for i in range(1, args.nodes + 1)]
    for i in range(args.guests):
        vmid = 100 + i
        pve.add_vm(vmid, f"vm-{vmid}", node=nodes[i % len(nodes)], status="running" if i % 10 else "stopped",
                   config={"memory": 2048, "cores": 2, "scsi0": "local-lvm:vm-disk-0,size=32G"})
    await pve.start(args.cert, args.key)
    loop = asyncio.get_running_loop()
    count_file = Path(args.count_file)
    loop.add_signal_handler(signal.SIGUSR1, lambda: count_file.write_text(f"{len(pve.requests)}\n"))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready {pve.url}", flush=True)
    await stop.wait()
    await pve.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guests", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=1)  # pve-exporter reads configs of the local node only
    parser.add_argument("--host", default="127.0.40.1")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--count-file", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args, Path(args.token_file).read_text().strip()))


if __name__ == "__main__":
    main()
