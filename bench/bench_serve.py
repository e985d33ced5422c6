"""Serving under load: throughput, latency and memory with and without dynamic batching.

For each variant (``--batch-wait-ms 0``: one request per model batch, the
one-at-a-time server; and ``--batch-wait-ms W``: dynamic batching) it starts
``transduce serve MODEL`` as a subprocess on 127.0.0.1 and, from this process
(a second one, with a small HTTP/1.1 keep-alive client on asyncio), sends:

* single-sentence requests at 1/4/16/64 concurrent clients: requests/s, p50
  and p99 latency;
* a mixed burst: 16 clients, one of which sends maximal requests (``--max-texts``
  texts at beam = n-best = 32 with attention, as large as the default budget
  allows) while 15 send single sentences: p50/p99 of the small requests;
* the server's peak RSS (VmHWM) and its RSS when idle afterwards;
* with batching on, a burst of ``--burst`` requests (16 clients) mixing good
  and bad ones: counts by status, 5xx, dropped (no answer), RSS before/after.

Every load is bounded in count and in time (``--max-seconds`` each) and only
talks to 127.0.0.1.

    python3 bench/bench_serve.py --write                 # trains the toy recipe first (~1 min)
    python3 bench/bench_serve.py --model runs/toy --smoke  # a few seconds
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import RESULTS, cpu_name, write_section  # noqa: E402

HEADING = "## Serving (bench/bench_serve.py)"
SMOKE = {"requests": 40, "repeats": 1, "concurrency": "1,16", "mixed": 40, "burst": 60, "max_texts": 16}
TOY_TRAIN = ["train", "toy", "train.progress=false", "model.hidden=256", "model.emb_dim=128"]
"""How the default model is trained: the toy recipe (reverse digit sequences) at a width
where decoding, not HTTP, is most of a request's cost (1x256 biGRU, 0.7M parameters)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``--smoke`` changes the defaults of those not given."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a trained model folder (default: train the toy recipe into a temp folder)")
    p.add_argument("--requests", type=int, default=1000, help="single-sentence requests per concurrency level")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per level and variant, interleaved; the median requests/s is reported")
    p.add_argument("--concurrency", default="1,4,16,64", help="comma list of concurrent clients")
    p.add_argument("--wait-ms", type=float, default=5.0, help="--batch-wait-ms of the batching variant")
    p.add_argument("--mixed", type=int, default=600, help="requests of the mixed burst")
    p.add_argument("--max-texts", type=int, default=256, help="texts of one maximal request")
    p.add_argument("--burst", type=int, default=2000, help="requests of the good-and-bad burst")
    p.add_argument("--server-threads", type=int, default=1, help="torch threads of the server (OMP_NUM_THREADS)")
    p.add_argument("--max-seconds", type=float, default=180.0, help="time bound of each load")
    p.add_argument("--write", action="store_true", help="replace our section of bench/RESULTS.md")
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true",
                   help="tiny settings for a test: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    if p.parse_args(argv).smoke:  # smoke settings, unless given explicitly
        p.set_defaults(**SMOKE)
    args = p.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    return args


# --- a small HTTP/1.1 client (httpx would cost the server half a core) -------------

class Connection:
    """One keep-alive connection to 127.0.0.1:port."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> int:
        """POST ``body`` (JSON) -> the status (the body is read and dropped); reconnects as needed."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            close |= name.lower() == "connection" and "close" in value.lower()
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


@dataclass
class Result:
    kind: str
    status: int  # 0: no answer (dropped)
    seconds: float


async def _client(port: int, queue: list, out: list[Result], deadline: float, others: list | None = None) -> None:
    """One client: take (kind, body) from ``queue`` until it is empty or time is up
    (or, given ``others``, until that queue is empty too)."""
    conn = Connection(port)
    while queue and time.monotonic() < deadline and (others is None or others):
        kind, body = queue.pop()
        start = time.perf_counter()
        try:
            status = await asyncio.wait_for(conn.post("/api/translate", body), deadline - time.monotonic())
        except (OSError, ValueError, IndexError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            status = 0
            conn.close()
        out.append(Result(kind, status, time.perf_counter() - start))
    conn.close()


def load(port: int, payloads: list[tuple[str, dict]], concurrency: int, max_seconds: float,
         pinned: list[tuple[str, dict]] = ()) -> tuple[list[Result], float]:
    """Send ``payloads`` with ``concurrency`` clients (plus one client for ``pinned``,
    when given, that runs until the others are done) -> (results, wall seconds)."""
    async def main() -> list[Result]:
        """All clients at once, on one event loop."""
        deadline = time.monotonic() + max_seconds
        queue = [(k, json.dumps(p).encode()) for k, p in reversed(payloads)]
        out: list[Result] = []
        clients = [_client(port, queue, out, deadline) for _ in range(concurrency)]
        if pinned:
            side = [(k, json.dumps(p).encode()) for k, p in reversed(pinned)]
            clients.append(_client(port, side, out, deadline, queue))
        await asyncio.gather(*clients)
        return out

    start = time.perf_counter()
    results = asyncio.run(main())
    return results, time.perf_counter() - start


# --- the server under test ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``transduce serve MODEL`` in a subprocess on 127.0.0.1 (started by ``with``)."""

    def __init__(self, model: str, wait_ms: float, threads: int):
        self.port = free_port()
        self.cmd = [sys.executable, "-c", "import sys; from transduce.cli import main; sys.exit(main())",
                    "serve", model, "--port", str(self.port), "--batch-wait-ms", f"{wait_ms:g}"]
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads))

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the server did not start: {shlex.join(self.cmd)}")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def memory(self) -> tuple[float, float]:
        """(RSS, peak RSS) of the server process in MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


# --- payloads and figures ------------------------------------------------------------

def digits(n: int, rng: random.Random) -> str:
    return " ".join(str(rng.randint(0, 9)) for _ in range(n))


def small(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    """``n`` single-sentence requests of 3-10 digits (the toy task's lengths), model defaults."""
    return [("small", {"texts": [digits(rng.randint(3, 10), rng)]}) for _ in range(n)]


def maximal(texts: int, rng: random.Random) -> tuple[str, dict]:
    """The largest request the default budget admits: ``texts`` x 32 tokens x beam 32
    (= 262,144 source tokens x beam for 256 texts), n-best 32, attention."""
    return ("maximal", {"texts": [digits(32, rng) for _ in range(texts)], "beam": 32, "nbest": 32,
                        "attention": True})


def good_and_bad(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    """``n`` requests: 80% good (small, every 25th 32 sentences at beam 8 with attention),
    20% bad (empty, unknown field, unknown model, too long, beam too large)."""
    bad = [{"texts": []}, {"texts": ["1"], "beem": 2}, {"texts": ["1"], "model": "x"},
           {"texts": ["1 " * 1500]}, {"texts": ["1"], "beam": 99}]
    out = []
    for k in range(n):
        if k % 25 == 0:
            out.append(("good", {"texts": [digits(rng.randint(3, 10), rng) for _ in range(32)], "beam": 8,
                                 "attention": True}))
        elif k % 5 == 0:
            out.append(("bad", rng.choice(bad)))
        else:
            out.append(("good", {"texts": [digits(rng.randint(3, 10), rng)]}))
    return out


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Figures:
    """What one load measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    failed: int
    statuses: dict = field(default_factory=dict)


def figures(results: list[Result], wall: float, kind: str | None = "small") -> Figures:
    """Answers per second and latency percentiles of the requests of ``kind`` (None: all)."""
    mine = [r for r in results if kind is None or r.kind == kind]
    lat = [r.seconds * 1000 for r in mine if r.status == 200]
    statuses: dict = {}
    for r in mine:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    ok = statuses.get(200, 0)
    return Figures(ok / wall, pct(lat, 50), pct(lat, 99), ok, len(mine) - ok, statuses)


# --- the loads ------------------------------------------------------------------------

def throughput(servers: dict, args, rng: random.Random) -> dict:
    """Single-sentence loads per concurrency level, the variants interleaved run by run
    -> {(variant, clients): Figures of the run with the median requests/s}."""
    out = {}
    for clients in args.levels:
        runs: dict = {name: [] for name in servers}
        for _ in range(args.repeats):
            for name, server in servers.items():
                results, wall = load(server.port, small(args.requests, rng), clients, args.max_seconds)
                runs[name].append(figures(results, wall))
        for name, figs in runs.items():
            out[name, clients] = sorted(figs, key=lambda f: f.rps)[len(figs) // 2]
    return out


def mixed(server: Server, args, rng: random.Random) -> tuple[Figures, Figures]:
    """15 clients of single sentences while one client sends maximal requests back to
    back -> (small requests' figures, maximal requests' figures)."""
    big = [maximal(args.max_texts, rng) for _ in range(100)]
    results, wall = load(server.port, small(args.mixed, rng), 15, args.max_seconds, pinned=big)
    return figures(results, wall, "small"), figures(results, wall, "maximal")


def burst(server: Server, args, rng: random.Random) -> tuple[Figures, float, float]:
    """Good and bad requests, 16 clients -> (figures, RSS before, RSS after 2 s idle)."""
    before = server.memory()[0]
    results, wall = load(server.port, good_and_bad(args.burst, rng), 16, args.max_seconds)
    time.sleep(2)
    return figures(results, wall, None), before, server.memory()[0]


def warm(server: Server, rng: random.Random) -> float:
    """A few requests (one maximal-sized batch among them) -> RSS afterwards, MB."""
    load(server.port, small(50, rng) + [maximal(8, rng)], 4, 60)
    time.sleep(1)
    return server.memory()[0]


def toy_model(folder: Path) -> str:
    """Train the toy recipe into ``folder`` (about a minute) -> its path."""
    cmd = [sys.executable, "-c", "import sys; from transduce.cli import main; sys.exit(main())",
           *TOY_TRAIN, "--out", str(folder)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return str(folder)


# --- the report -------------------------------------------------------------------------

OFF, ON = "one at a time", "dynamic batching"


def throughput_table(tp: dict, args) -> list[str]:
    """Markdown rows: requests/s and latency per concurrency level, both servers side by side."""
    lines = [f"Single-sentence requests, {args.requests} per run; median requests/s of {args.repeats} "
             f"runs per cell, the two servers interleaved run by run:", "",
             f"| clients | {OFF}: req/s | p50 ms | p99 ms | {ON}: req/s | p50 ms | p99 ms | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in args.levels:
        off, on = tp[OFF, c], tp[ON, c]
        lines.append(f"| {c} | {off.rps:.0f} | {off.p50_ms:.1f} | {off.p99_ms:.1f} | {on.rps:.0f} | "
                     f"{on.p50_ms:.1f} | {on.p99_ms:.1f} | {on.rps / off.rps:.2f}x |")
    return lines


def mixed_table(mx: dict, memory: dict, args) -> list[str]:
    """Markdown rows: small-request latency under maximal requests, and memory, per server."""
    lines = ["", f"Mixed burst: {args.mixed} single sentences from 15 clients while a 16th sends maximal "
                 f"requests ({args.max_texts} texts x 32 tokens, beam 32, n-best 32, attention) back to back:", "",
             "| server | small p50 ms | small p99 ms | maximal answered | maximal p50 s | RSS warm MB | "
             "peak RSS MB | RSS idle after MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (sm, big) in mx.items():
        warm_mb, peak, idle = memory[name]
        lines.append(f"| {name} | {sm.p50_ms:.0f} | {sm.p99_ms:.0f} | {big.ok} | {big.p50_ms / 1000:.2f} | "
                     f"{warm_mb:.0f} | {peak:.0f} | {idle:.0f} |")
    return lines


def burst_table(fig: Figures, before: float, after: float, args) -> list[str]:
    """Markdown rows: the good-and-bad burst's answers by status class, and memory."""
    st = fig.statuses
    four = sum(v for k, v in st.items() if 400 <= k < 500)
    five = sum(v for k, v in st.items() if k >= 500)
    return ["", f"Burst of good and bad requests ({ON}): {args.burst} requests, 16 clients, 20% bad:", "",
            "| requests | 200 | 4xx | 5xx | dropped | RSS before MB | RSS after MB |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {sum(st.values())} | {st.get(200, 0)} | {four} | {five} | {st.get(0, 0) + args.burst - sum(st.values())} | "
            f"{before:.0f} | {after:.0f} |"]


def report(args, argv: list[str], tp: dict, mx: dict, memory: dict, bu: tuple, loads: tuple) -> str:
    """The RESULTS.md section: set-up, the three tables, and the goals met or missed."""
    ratio = tp[ON, 16].rps / tp[OFF, 16].rps if 16 in args.levels else float("nan")
    p99 = mx[ON][0].p99_ms
    lines = [HEADING, "",
             f"`python3 bench/bench_serve.py {shlex.join(argv)}` on {cpu_name()}, {os.cpu_count()} cores "
             f"(load average {loads[0]:.2f} before, {loads[1]:.2f} after: other work shares the machine), "
             f"server torch threads {args.server_threads}, model {args.model_desc}; client: a second "
             f"process on 127.0.0.1. Batching: `--batch-wait-ms {args.wait_ms:g}`, default budgets.", ""]
    lines += throughput_table(tp, args) + mixed_table(mx, memory, args) + burst_table(*bu, args)
    lines += ["", f"Goals: throughput at 16 clients with dynamic batching {ratio:.2f}x the one-at-a-time "
                  f"server (goal >= 3x: {'met' if ratio >= 3 else 'missed'}); p99 of small requests under "
                  f"the mixed burst {p99:.0f} ms (goal < 1000 ms: {'met' if p99 < 1000 else 'missed'})."]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------

def run(args, argv: list[str], model: str) -> str:
    """Start both servers, run every load, return the report."""
    rng = random.Random(0)
    loads = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        servers = {OFF: stack.enter_context(Server(model, 0, args.server_threads)),
                   ON: stack.enter_context(Server(model, args.wait_ms, args.server_threads))}
        warm_mb = {name: warm(server, rng) for name, server in servers.items()}
        tp = throughput(servers, args, rng)
        mx = {name: mixed(server, args, rng) for name, server in servers.items()}
        time.sleep(2)
        memory = {name: (warm_mb[name], server.memory()[1], server.memory()[0])
                  for name, server in servers.items()}
        bu = burst(servers[ON], args, rng)
    loads.append(os.getloadavg()[0])
    return report(args, argv, tp, mx, memory, bu, tuple(loads))


def main(argv: list[str] | None = None) -> int:
    """Train the default model if no --model, run, print (and with --write, record) the report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or toy_model(Path(tmp) / "toy")
        args.model_desc = (f"`{args.model}`" if args.model else
                           f"the toy recipe at width 256 (`transduce {' '.join(TOY_TRAIN)}`: 1x256 biGRU, "
                           f"0.7M parameters, 99.7% exact match)")
        text = run(args, argv, model)
    print(text)
    if args.write:
        write_section(HEADING, text, Path(args.results))
        print(f"bench_serve: wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
