"""Dynamic batching: one worker thread per model, fed by the event loop.

A request becomes a :class:`Job` (its tokenized sources, its DecodeOptions).
The model's :class:`ModelWorker` repeatedly forms one model batch and decodes
it off the event loop:

* the next job served is the one that has waited longest since it arrived or
  since its last batch finished, so a large request, cut into batches of at
  most ``batch_tokens`` (sentences x longest source x beam), interleaves with
  small ones: a small request waits for at most the batch in progress;
* jobs with the same key (same DecodeOptions and tree flag; a sampled request
  never shares, its generator is its own) fill the rest of that batch, each
  job's sentences longest first, so a request alone is cut exactly as
  ``Translator.translate`` cuts it (batches of ``batch_size``, longest first)
  while it fits the budget, and gives the same outputs;
* the worker waits up to ``batch_wait_ms`` (counted from the later of the
  oldest job's arrival and the end of the last batch, so that the clients
  just answered can join) for others to join, unless the waiting sentences
  already fill a batch or as many requests wait as the last batch served plus
  those then waiting, and only while requests come concurrently (more than
  one job queued, or the last batch served more than one): a lone client pays
  no wait. 0 turns merging off (one request per batch).

Results go back to the event loop with ``call_soon_threadsafe``. When the
queue empties the worker returns freed heap memory to the system (glibc
``malloc_trim``), so RSS comes back near its baseline after a burst.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import itertools
import threading
import time
from dataclasses import dataclass, field

from ..config import DecodeOptions
from ..translator import Translation
from .limits import ServeLimits, batch_cost
from .metrics import ServeMetrics
from .tree import decode_with_tree

_ids = itertools.count()


class Unavailable(RuntimeError):
    """The model's worker is stopping: the request is refused (HTTP 503)."""


@dataclass(eq=False)
class Job:
    """One request's sources (``translator.Source``) on their way through a worker."""

    sources: list
    opts: DecodeOptions
    tree: bool
    future: asyncio.Future
    generator: object = None  # torch.Generator for sampling
    results: list = field(default_factory=list)
    trees: list = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # untaken non-empty sources, longest first
    remaining: int = 0  # non-empty sources not yet decoded
    ready_since: float = field(default_factory=time.monotonic)
    arrived: float = field(default_factory=time.monotonic)
    key: tuple = ()
    cancelled: bool = False

    def __post_init__(self) -> None:
        n = len(self.sources)
        self.results = [None] * n
        self.trees = [{"steps": [], "path": []} for _ in range(n)]
        self.order = sorted((i for i, s in enumerate(self.sources) if s.ids),
                            key=lambda i: -len(self.sources[i].ids))
        self.remaining = len(self.order)
        self.key = (self.opts, self.tree, next(_ids) if self.opts.method == "sample" else None)
        for i, s in enumerate(self.sources):
            if not s.ids:  # empty input: n-best empty outputs, no model run (as Translator.translate)
                self.results[i] = Translation("", 0.0, [], [], [] if self.opts.return_attention else None,
                                              [("", 0.0)] * self.opts.nbest, 0.0, False)


def _trimmer():
    """glibc's ``malloc_trim`` (returns freed heap pages to the system), or None."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _trimmer()


def _settle(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    """Complete ``future`` (on its event loop) unless it was cancelled or timed out."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ModelWorker:
    """The queue and the one decoding thread of one model (see the module docstring)."""

    def __init__(self, name: str, translator, limits: ServeLimits, metrics: ServeMetrics):
        self.name, self.translator, self.limits, self.metrics = name, translator, limits, metrics
        self.cond = threading.Condition()
        self.jobs: list[Job] = []  # jobs with untaken sentences
        self.in_flight = 0  # admitted cost (source tokens x beam)
        self.stopping = False
        self.last_jobs = 0  # requests in the last batch: > 1 means clients come concurrently
        self.free_since = 0.0  # when the last batch ended (time.monotonic)
        self.expect = 0  # requests expected back for the next batch (see _full)
        self.thread = threading.Thread(target=self._run, name=f"transduce-{name}", daemon=True)

    def stop(self) -> None:
        """Stop the thread after the batch in progress; waiting jobs are dropped."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    # --- admission (event loop) -------------------------------------------------

    def admit(self, cost: int) -> bool:
        """Count ``cost`` in flight, or False when that would pass ``max_tokens_in_flight``."""
        with self.cond:
            if self.in_flight and self.in_flight + cost > self.limits.max_tokens_in_flight:
                return False
            self.in_flight += cost
        self.metrics.tokens_in_flight.labels(self.name).set(self.in_flight)
        return True

    def release(self, cost: int) -> None:
        """Take an answered (or abandoned) request's cost out of flight."""
        with self.cond:
            self.in_flight -= cost
        self.metrics.tokens_in_flight.labels(self.name).set(self.in_flight)

    def submit(self, job: Job) -> None:
        """Queue ``job``; a job without non-empty sources is answered at once."""
        if not job.order:
            _settle(job.future, job)
            return
        with self.cond:
            if self.stopping:
                raise Unavailable(f"model '{self.name}' is shutting down")
            if not self.thread.is_alive():
                self.thread.start()  # with the first request: a TestClient may skip the lifespan
            self.jobs.append(job)
            self._queue_metrics()
            self.cond.notify()

    def cancel(self, job: Job) -> None:
        """Drop ``job``'s untaken sentences (timed out or abandoned)."""
        with self.cond:
            job.cancelled = True
            job.order.clear()
            if job in self.jobs:
                self.jobs.remove(job)
            self._queue_metrics()

    def _queue_metrics(self) -> None:
        """Queue gauges (call with the lock held)."""
        self.metrics.queue_requests.labels(self.name).set(len(self.jobs))
        self.metrics.queue_sentences.labels(self.name).set(sum(len(j.order) for j in self.jobs))

    # --- the worker thread ----------------------------------------------------------

    def _run(self) -> None:
        """Form a batch, decode it, hand the results back; until stopped."""
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._decode(batch)
            with self.cond:
                now = self.free_since = time.monotonic()
                for job in {id(j): j for j, _ in batch}.values():
                    job.ready_since = now
                self.expect = self.last_jobs + len(self.jobs)  # clients answered + those waiting
                idle = not self.jobs
            if idle and _MALLOC_TRIM is not None:
                _MALLOC_TRIM(0)

    def _next_batch(self) -> list[tuple[Job, int]] | None:
        """Wait for work and take the next batch: [(job, source index)], or None to stop."""
        wait = self.limits.batch_wait_ms / 1000.0
        with self.cond:
            while not self.stopping:
                if not self.jobs:
                    self.cond.wait()
                    continue
                head = min(self.jobs, key=lambda j: j.ready_since)
                due = max(head.arrived, self.free_since) + wait - time.monotonic()
                gather = len(self.jobs) > 1 or self.last_jobs > 1
                if wait > 0 and due > 0 and gather and not self._full(head):
                    self.cond.wait(due)
                    continue
                batch = self._take(head)
                self._queue_metrics()
                return batch
            return None

    def _full(self, head: Job) -> bool:
        """Whether waiting is over: the sentences compatible with ``head`` fill a batch,
        or as many requests wait as the last batch served plus those then waiting
        (closed-loop clients: everyone is back)."""
        mates = [j for j in self.jobs if j.key == head.key]
        n = sum(len(j.order) for j in mates)
        width = max(len(j.sources[j.order[0]].ids) for j in mates)
        return (n >= head.opts.batch_size or len(mates) >= self.expect
                or batch_cost(n, width, head.opts) >= self.limits.batch_tokens)

    def _take(self, head: Job) -> list[tuple[Job, int]]:
        """Up to one budget-sized batch: ``head``'s sentences first, then those of
        compatible jobs (longest wait first) while merging is on; each job's
        sentences longest first. Jobs left without sentences leave the queue."""
        mates = [head]
        if self.limits.batch_wait_ms > 0:
            mates += sorted((j for j in self.jobs if j.key == head.key and j is not head),
                            key=lambda j: j.ready_since)
        batch, width, cap = [], 0, head.opts.batch_size
        for job in mates:
            while job.order and len(batch) < cap:
                w = max(width, len(job.sources[job.order[0]].ids))
                if batch and batch_cost(len(batch) + 1, w, head.opts) > self.limits.batch_tokens:
                    break
                batch.append((job, job.order.pop(0)))
                width = w
        self.jobs = [j for j in self.jobs if j.order]
        self.last_jobs = len({id(j) for j, _ in batch})
        return batch

    def _decode(self, batch: list[tuple[Job, int]]) -> None:
        """Decode one batch (all its jobs share a key) and settle the jobs it completes."""
        head = batch[0][0]
        sources = [job.sources[i] for job, i in batch]
        start = time.perf_counter()
        try:
            if head.tree:
                results, trees = decode_with_tree(self.translator, sources, head.opts)
            else:
                results = self.translator.decode_sources(sources, head.opts, head.generator)
                trees = [None] * len(results)
        except Exception as exc:  # noqa: BLE001 -- answered as a 500 to the jobs of this batch only
            for job in {id(j): j for j, _ in batch}.values():
                self.cancel(job)
                job.future.get_loop().call_soon_threadsafe(_settle, job.future, None, exc)
            return
        self._observe(batch, results, time.perf_counter() - start)
        for (job, i), result, tree in zip(batch, results, trees):
            job.results[i] = result
            if tree is not None:
                job.trees[i] = tree
            job.remaining -= 1
            if job.remaining == 0 and not job.cancelled:
                job.future.get_loop().call_soon_threadsafe(_settle, job.future, job)

    def _observe(self, batch: list[tuple[Job, int]], results: list[Translation], seconds: float) -> None:
        """Batch metrics: sentences, requests, time, tokens in and out."""
        name, m = self.name, self.metrics
        out_tokens = sum(len(r.tokens) for r in results)
        m.batch_sentences.labels(name).observe(len(batch))
        m.batch_requests.labels(name).observe(len({id(j) for j, _ in batch}))
        m.batch_seconds.labels(name).observe(seconds)
        m.source_tokens.labels(name).inc(sum(len(job.sources[i].ids) for job, i in batch))
        m.output_tokens.labels(name).inc(out_tokens)
        m.tokens_per_second.labels(name).set(out_tokens / seconds if seconds > 0 else 0.0)
