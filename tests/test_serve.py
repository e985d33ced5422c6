"""The REST app, over a stand-in translator with known outputs."""
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from transduce import config  # noqa: E402
from transduce.cli import build_parser  # noqa: E402
from transduce.errors import ConfigError  # noqa: E402
from transduce.serve.app import create_app, model_names  # noqa: E402
from transduce.serve.limits import ServeLimits, limits_from_args  # noqa: E402
from transduce.translator import Source, Translator  # noqa: E402


@dataclass
class FakeResult:
    text: str
    score: float
    tokens: list
    src_tokens: list
    attention: list | None
    nbest: list = field(default_factory=list)


class ReverseTranslator:
    """Reverses the characters of each text; records the options it was called with."""

    options = Translator.options  # the real merging and checking of decoding options
    generator = Translator.generator

    def __init__(self):
        self.config = config.load(None, ["search.beam=4"])
        self.model = SimpleNamespace(num_parameters=lambda: 1234)
        self.calls = []
        self.device = "cpu"
        self.rescorers = []

    def tokenize(self, texts):
        """One piece per character (what the server's worker batches)."""
        return [Source(list(text), [4] * len(text)) for text in texts]

    def decode_sources(self, batch, options, generator=None, tree=None):
        nbest, return_attention = options.nbest, options.return_attention
        self.calls.append({"beam": options.beam, "nbest": nbest, "attention": return_attention,
                           "method": options.method})
        out = []
        for source in batch:
            text = "".join(source.pieces)
            rev = text[::-1]
            att = [[1.0 if j == len(text) - 1 - i else 0.0 for j in range(len(text))] for i in range(len(text))]
            out.append(FakeResult(rev, -0.5, list(rev), list(text), att if return_attention else None,
                                  [(rev, -0.5), (text, -2.0)][:nbest]))
        return out


@pytest.fixture
def client_and_model():
    fake = ReverseTranslator()
    return TestClient(create_app({"rev": fake})), fake


def test_page_and_health(client_and_model):
    client, _ = client_and_model
    page = client.get("/")
    assert page.status_code == 200 and "<title>transduce</title>" in page.text
    assert client.get("/api/health").json() == {"status": "ok", "models": 1}


def test_models_lists_defaults(client_and_model):
    client, _ = client_and_model
    (info,) = client.get("/api/models").json()
    assert info["name"] == "rev" and info["beam"] == 4 and info["parameters"] == 1234


def test_translate_keeps_order_and_options(client_and_model):
    client, fake = client_and_model
    res = client.post("/api/translate", json={"texts": ["abc", "xy"], "beam": 3, "nbest": 2})
    assert res.status_code == 200
    body = res.json()
    assert [t["text"] for t in body["translations"]] == ["cba", "yx"]
    assert body["translations"][0]["nbest"] == [{"text": "cba", "score": -0.5}, {"text": "abc", "score": -2.0}]
    assert fake.calls[-1] == {"beam": 3, "nbest": 2, "attention": False, "method": "beam"}
    assert "attention" not in body["translations"][0]


def test_translate_uses_model_beam_by_default_and_returns_attention(client_and_model):
    client, fake = client_and_model
    body = client.post("/api/translate", json={"texts": ["ab"], "attention": True}).json()
    assert fake.calls[-1]["beam"] == 4
    (tr,) = body["translations"]
    assert tr["src_tokens"] == ["a", "b"] and tr["tokens"] == ["b", "a"]
    assert tr["attention"] == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("payload, status, detail", [
    ({"texts": []}, 422, "'texts' is empty"),
    ({"texts": ["a"], "model": "nope"}, 404, "unknown model 'nope'"),
    ({"texts": ["a" * 5000]}, 413, "texts[0] is longer than 2000 characters"),
    ({"texts": ["a"] * 300}, 413, "at most 256 texts per request"),
    ({"texts": ["a"], "beam": 2, "nbest": 3}, 422, "decoding option 'nbest': must be at most beam (2)"),
    ({"texts": ["a"], "nbest": 5}, 422, "decoding option 'nbest': must be at most beam (4)"),
    ({"texts": ["a"], "beam": 64}, 422, "beam and nbest are at most 32 here"),
    ({"texts": ["a"], "top_p": 0}, 422, "decoding option 'top_p': must be in (0, 1]"),
    ({"texts": ["a"], "method": "greedy", "tree": True}, 422, "'tree' needs method 'beam'"),
])
def test_bad_requests_get_clear_errors(client_and_model, payload, status, detail):
    client, _ = client_and_model
    res = client.post("/api/translate", json=payload)
    assert res.status_code == status
    assert detail in res.json()["detail"]


def test_bad_beam_is_rejected_by_validation(client_and_model):
    client, _ = client_and_model
    assert client.post("/api/translate", json={"texts": ["a"], "beam": 0}).status_code == 422


@pytest.mark.parametrize("field", ["temperature", "max_len", "beem"])
def test_every_decoding_option_is_taken_and_unknown_fields_refused(client_and_model, field):
    client, fake = client_and_model
    res = client.post("/api/translate", json={"texts": ["ab"], field: 2})
    if field == "beem":
        assert res.status_code == 422 and "beem" in res.text
    else:
        assert res.status_code == 200


def test_sampling_options_reach_the_translator(client_and_model):
    client, fake = client_and_model
    res = client.post("/api/translate", json={"texts": ["ab"], "method": "sample", "seed": 3})
    assert res.status_code == 200 and fake.calls[-1]["method"] == "sample"
    (info,) = client.get("/api/models").json()
    assert info["search"]["beam"] == 4 and info["search"]["length_penalty"] == "gnmt"


def test_model_names_are_unique():
    assert model_names(["runs/a/model", "runs/b/model", "runs/c"]) == ["model", "b/model", "c"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_without_network(client_and_model, page):
    client, _ = client_and_model
    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert assets and not [a for a in assets if "://" in a or a.startswith("//")]  # no CDN
    for asset in assets:
        res = client.get(asset)
        assert res.status_code == 200 and len(res.content) > 0, asset
    assert client.get("/openapi.json").json()["paths"]["/api/translate"]


def test_metrics_in_prometheus_text_format(client_and_model):
    client, _ = client_and_model
    client.post("/api/translate", json={"texts": ["ab", "c"]})
    client.post("/api/translate", json={"texts": []})
    res = client.get("/metrics")
    assert res.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(res.text)}
    statuses = {s.labels["status"] for s in families["transduce_requests"].samples
                if s.name == "transduce_requests_total" and s.labels["endpoint"] == "/api/translate"}
    assert statuses == {"200", "422"}
    for name in ("transduce_request_seconds", "transduce_batch_sentences", "transduce_batch_requests",
                 "transduce_tokens_per_second", "transduce_queue_sentences", "transduce_tokens_in_flight",
                 "transduce_output_tokens", "transduce_source_tokens"):
        assert name in families, name


def test_limits_are_listed_and_static_files_served(client_and_model):
    client, _ = client_and_model
    assert client.get("/api/limits").json()["max_texts"] == 256
    assert "beamTree" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200


def test_bad_limits_are_refused_naming_the_flag():
    with pytest.raises(ConfigError, match="serve limit 'batch_wait_ms': must be in"):
        ServeLimits(batch_wait_ms=-1)
    args = build_parser().parse_args(["serve", "m", "--max-beam", "0"])
    with pytest.raises(ConfigError, match="--max-beam: must be in"):
        limits_from_args(args)
