"""The REST server for real: uvicorn on a 127.0.0.1 port, a tiny trained model, and
the Translator it wraps as the reference."""
from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

from live_server import LiveServer, metric, post_many  # noqa: E402

from transduce.cli import main  # noqa: E402
from transduce.serve.app import create_app  # noqa: E402
from transduce.serve.limits import ServeLimits  # noqa: E402
from transduce.translator import Translator  # noqa: E402


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory, toy_overrides) -> Path:
    """The built-in toy recipe (reverse digit sequences), trained for a few seconds."""
    out = tmp_path_factory.mktemp("serve") / "toy"
    assert main(["train", "toy", *toy_overrides, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def reference(toy_dir) -> Translator:
    return Translator.from_dir(toy_dir)


@pytest.fixture
def serve(toy_dir):
    """``with serve(ServeLimits(...)) as url:`` a live server over the toy model."""
    @contextlib.contextmanager
    def start(limits: ServeLimits = ServeLimits()):
        with LiveServer(create_app({"toy": Translator.from_dir(toy_dir)}, limits)) as url:
            yield url
    return start


def digits(n: int, rng: random.Random) -> str:
    return " ".join(str(rng.randint(0, 9)) for _ in range(n))


def expected(reference: Translator, texts: list[str], options: dict) -> list[dict]:
    """What the server must answer: Translator.translate's outputs, as JSON."""
    attention = options.pop("attention", False)
    out = []
    for tr in reference.translate(texts, return_attention=attention, **options):
        item = {"text": tr.text, "score": tr.score, "nbest": [{"text": t, "score": s} for t, s in tr.nbest]}
        if attention:
            item.update(src_tokens=tr.src_tokens, tokens=tr.tokens, attention=tr.attention)
        out.append(item)
    return out


OPTIONS = [
    {},
    {"beam": 4, "nbest": 3, "length_penalty": "average"},
    {"beam": 3, "alpha": 1.0, "coverage": 0.5, "attention": True},
    {"method": "greedy", "min_len": 3, "max_len": 5},
    {"method": "sample", "seed": 7, "temperature": 0.8, "top_k": 5},
    {"method": "sample", "seed": 7, "top_p": 0.9, "attention": True},
    {"beam": 2, "replace_unk": True},
    {"beam": 2, "max_len_a": 0.5, "max_len_b": 1, "length_penalty": "gnmt", "alpha": 0.2},
]


def test_answers_equal_translator_outputs_exactly(serve, reference):
    rng = random.Random(1)
    texts = [digits(rng.randint(1, 9), rng) for _ in range(12)] + ["", "x 1 y 2"]
    with serve() as url, httpx.Client(base_url=url, timeout=30) as client:
        for options in OPTIONS:
            res = client.post("/api/translate", json={"texts": texts, **options})
            assert res.status_code == 200, res.text
            assert res.json()["translations"] == expected(reference, texts, dict(options)), options


def test_200_concurrent_requests_succeed_in_shared_batches(serve, reference):
    rng = random.Random(2)
    texts = [digits(rng.randint(1, 9), rng) for _ in range(200)]
    with serve() as url:
        results = post_many(url, [{"texts": [t]} for t in texts], concurrency=200)
        metrics = httpx.get(f"{url}/metrics").text
    assert [status for status, _, _ in results] == [200] * 200
    for (_, body, _), want in zip(results, reference.translate(texts)):
        (got,) = body["translations"]
        assert got["text"] == want.text  # merged batches: same outputs, scores up to float rounding
        assert math.isclose(got["score"], want.score, rel_tol=1e-5, abs_tol=1e-5)
    batches = metric(metrics, "transduce_batch_sentences_count", model="toy")
    alone = metric(metrics, "transduce_batch_sentences_bucket", model="toy", le="1.0")
    assert metric(metrics, "transduce_batch_sentences_sum", model="toy") == 200
    assert batches < 200 and alone < batches  # some batches held more than one sentence
    assert metric(metrics, "transduce_requests_total", endpoint="/api/translate", status="200") == 200


TIGHT = ServeLimits(max_texts=64, max_chars=500, max_beam=16, max_request_tokens=40_000,
                    max_tokens_in_flight=60_000, batch_tokens=1_000, timeout_s=1.0)


@pytest.fixture(scope="module")
def tight_url(toy_dir):
    with LiveServer(create_app({"toy": Translator.from_dir(toy_dir)}, TIGHT)) as url:
        yield url


@pytest.mark.parametrize("payload, status, detail", [
    ({"texts": []}, 422, "'texts' is empty"),
    ({"texts": ["1"], "model": "nope"}, 404, "unknown model 'nope'"),
    ({"texts": ["1"] * 65}, 413, "at most 64 texts per request here (max_texts)"),
    ({"texts": ["1 " * 300]}, 413, "texts[0] is longer than 500 characters (max_chars)"),
    ({"texts": ["1 2 " * 120] * 16, "beam": 16}, 413, "at most 40000 here (max_request_tokens)"),
    ({"texts": ["1"], "beam": 17}, 422, "beam and nbest are at most 16 here (max_beam)"),
    ({"texts": ["1"], "beam": 2, "nbest": 3}, 422, "decoding option 'nbest': must be at most beam (2)"),
    ({"texts": ["1"], "top_p": 0}, 422, "decoding option 'top_p': must be in (0, 1]"),
    ({"texts": ["1"], "min_len": -1}, 422, "decoding option 'min_len'"),
    ({"texts": ["1"], "method": "greedy", "tree": True}, 422, "'tree' needs method 'beam'"),
    ({"texts": ["1"], "temprature": 1}, 422, "temprature"),
    ({"texts": "1 2"}, 422, "texts"),
    ({"texts": [1]}, 422, "texts"),
])
def test_each_bad_input_gets_its_documented_4xx(tight_url, payload, status, detail):
    res = httpx.post(f"{tight_url}/api/translate", json=payload)
    assert res.status_code == status
    assert detail in str(res.json()["detail"])


def big_request(rng: random.Random, beam: int) -> dict:
    """64 sentences of 60-70 digits with outputs of at least 55 tokens: many
    budget-sized batches of 55+ steps."""
    return {"texts": [digits(rng.randint(60, 70), rng) for _ in range(64)], "beam": beam, "min_len": 55}


def in_background(fn, *args) -> tuple[threading.Thread, list]:
    """Run ``fn(*args)`` in a thread; its result lands in the returned list."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    thread.start()
    return thread, box


def wait_for_metric(url: str, name: str, **labels: str) -> None:
    """Poll /metrics until ``name`` is positive (at most 10 s)."""
    deadline = time.monotonic() + 10
    while metric(httpx.get(f"{url}/metrics").text, name, **labels) <= 0:
        assert time.monotonic() < deadline, f"{name} never rose"
        time.sleep(0.01)


def test_busy_gets_429_slow_gets_504_and_the_server_goes_on(serve):
    big = big_request(random.Random(3), beam=8)  # 33,280 tokens x beam, ~64 batches: > 1 s
    with serve(TIGHT) as url:
        thread, box = in_background(post_many, url, [big], 1)
        wait_for_metric(url, "transduce_tokens_in_flight", model="toy")
        busy = httpx.post(f"{url}/api/translate", json=big)
        thread.join(30)
        health = httpx.get(f"{url}/api/health")
        small = httpx.post(f"{url}/api/translate", json={"texts": ["1 2 3"]})
    assert busy.status_code == 429 and "max_tokens_in_flight" in busy.json()["detail"]
    assert busy.headers["retry-after"] == "1"
    ((status, body, seconds),) = box[0]
    assert status == 504 and "longer than 1 s (timeout_s)" in body["detail"] and seconds < 3
    assert health.status_code == 200 and small.status_code == 200


def slowest_batch(metrics: str) -> float:
    """Upper bound of the slowest batch: the smallest histogram bucket holding them all."""
    count = metric(metrics, "transduce_batch_seconds_count", model="toy")
    for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"):
        if metric(metrics, "transduce_batch_seconds_bucket", model="toy", le=le) >= count:
            return float(le)
    return math.inf


def test_maximal_request_delays_a_small_one_by_at_most_one_batch(serve):
    big = big_request(random.Random(4), beam=8)  # cut into 64 one-sentence batches
    with serve(ServeLimits(batch_tokens=1_000)) as url:
        thread, box = in_background(post_many, url, [big], 1)
        wait_for_metric(url, "transduce_batch_seconds_count", model="toy")
        start = time.perf_counter()
        health = httpx.get(f"{url}/api/health")
        health_s = time.perf_counter() - start
        ((status, _, small_s),) = post_many(url, [{"texts": ["1 2 3"]}], 1)
        thread.join(60)
        metrics = httpx.get(f"{url}/metrics").text
    ((big_status, _, big_s),) = box[0]
    assert status == 200 and big_status == 200 and health.status_code == 200
    batch = slowest_batch(metrics)
    assert small_s <= 2 * batch + 0.3, (small_s, batch)  # the batch in progress, then its own
    assert small_s < big_s / 3 and health_s < 0.5


def rss_mb() -> float:
    """Resident memory of this process (server and client), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def burst_payloads(n: int, rng: random.Random) -> list[tuple[dict, int]]:
    """``n`` requests mixing good ones (small, and a few 32-sentence beam-8 ones with attention)
    and bad ones, each with the status it must get."""
    bad = [({"texts": []}, 422), ({"texts": ["1"], "beem": 2}, 422), ({"texts": ["1"], "model": "x"}, 404),
           ({"texts": ["1 " * 1500]}, 413), ({"texts": ["1"], "beam": 99}, 422),
           ({"texts": ["1\x00\ud7ff \u202e 2"], "nbest": 2, "beam": 2}, 200)]
    out = []
    for k in range(n):
        if k % 25 == 0:
            out.append(({"texts": [digits(rng.randint(20, 40), rng) for _ in range(32)], "beam": 8,
                         "attention": True}, 200))
        elif k % 5 == 0:
            out.append(rng.choice(bad))
        else:
            out.append(({"texts": [digits(rng.randint(1, 12), rng)]}, 200))
    return out


BURST = 400
"""Requests of the burst test (a few seconds here); bench/bench_serve.py --burst sends 2,000."""


def test_burst_of_good_and_bad_requests_no_5xx_none_dropped_memory_returns(serve):
    rng = random.Random(5)
    with serve() as url:
        post_many(url, [p for p, _ in burst_payloads(50, rng)], concurrency=16)  # warm-up
        baseline = rss_mb()
        payloads = burst_payloads(BURST, rng)
        results = post_many(url, [p for p, _ in payloads], concurrency=16)
        time.sleep(0.2)
        after = rss_mb()
        metrics = httpx.get(f"{url}/metrics").text
    assert len(results) == BURST
    assert [status for status, _, _ in results] == [want for _, want in payloads]
    assert metric(metrics, "transduce_tokens_in_flight", model="toy") == 0
    print(f"RSS: {baseline:.0f} MB before the burst, {after:.0f} MB after")
    assert after - baseline < 100, (baseline, after)
