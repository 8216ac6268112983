"""A broker that goes away and comes back with its data: a Tansu broker of the test's
own, reached only through a TCP forwarder on another port (the port Tansu advertises).
Killing the forwarder closes every client connection and refuses new ones, as a
broker restart does; starting it again on the same port brings the broker back.

Tansu cannot be restarted itself: the bundled binary's only storage engines are
`memory://` (gone with the process) and `s3://` (no S3 server here).

    python -m tests.integration.broker_proxy LISTEN_PORT TARGET_PORT
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from streams.devstack import free_port, tansu_binary
from streams.kafka_admin import kafka_ready

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _forward(target: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _serve(listen: int, target: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _forward(target, r, w), HOST, listen, reuse_address=True
    )
    async with server:
        await server.serve_forever()


class ProxiedTansu:
    """Tansu on a free port, advertised and reached at `kafka_url` (the forwarder)."""

    def __init__(self, log_dir: Path) -> None:
        self.broker_port, self.port = free_port(), free_port()
        self.log_dir = log_dir
        self.kafka_url = f"kafka://{HOST}:{self.port}"
        self.tansu = self._spawn(
            [
                tansu_binary(), "broker",
                "--listener-url", f"tcp://{HOST}:{self.broker_port}",
                "--advertised-listener-url", f"tcp://{HOST}:{self.port}",
                "--storage-engine", "memory://tansu/",
            ],
            "tansu",
        )  # fmt: skip
        self.proxy: subprocess.Popen | None = None
        self.come_back()

    def _spawn(self, command: list[str], name: str) -> subprocess.Popen:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
            )

    def go_away(self, sig: signal.Signals) -> None:
        assert self.proxy is not None
        self.proxy.send_signal(sig)
        self.proxy.wait()
        self.proxy = None

    def come_back(self, timeout: float = 20.0) -> None:
        command = [sys.executable, "-m", __name__, str(self.port), str(self.broker_port)]
        self.proxy = self._spawn(command, "proxy")
        deadline = time.monotonic() + timeout
        while not kafka_ready(self.kafka_url):
            assert self.tansu.poll() is None and self.proxy.poll() is None, "a server exited"
            assert time.monotonic() < deadline, "the broker did not come back"
            time.sleep(0.1)

    def stop(self) -> None:
        for process in (self.proxy, self.tansu):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2])))
