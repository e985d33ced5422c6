"""Helpers of the server tests: a real uvicorn server on a 127.0.0.1 port, in a thread,
and a bounded concurrent load against it."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families


class LiveServer:
    """``with LiveServer(app) as url:`` serves ``app`` on 127.0.0.1 (a free port)
    until the block ends."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


async def _load(url: str, payloads: list[dict], concurrency: int, timeout: float) -> list[tuple[int, dict, float]]:
    """POST each payload to /api/translate, ``concurrency`` at a time -> (status, body, seconds)."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        async def one(payload: dict) -> tuple[int, dict, float]:
            async with gate:
                start = time.perf_counter()
                res = await client.post("/api/translate", json=payload)
                return res.status_code, res.json(), time.perf_counter() - start
        return await asyncio.gather(*(one(p) for p in payloads))


def post_many(url: str, payloads: list[dict], concurrency: int, timeout: float = 60.0) -> list[tuple[int, dict, float]]:
    """Bounded concurrent load (one request per payload, results in payload order)."""
    return asyncio.run(_load(url, payloads, concurrency, timeout))


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``, in a
    Prometheus text exposition (0.0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
