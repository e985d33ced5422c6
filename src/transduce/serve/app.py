"""A FastAPI app over one or more :class:`~transduce.translator.Translator`.

Endpoints:
  GET  /                 the web page (static/: plain HTML, JS and CSS)
  GET  /api/health       {"status": "ok", "models": N}, answered during decodes too
  GET  /api/models       the loaded models and their default search settings
  GET  /api/limits       the request budgets (``limits.ServeLimits``)
  POST /api/translate    {"texts": [...], "model": name, "attention": false, "tree": false,
                          and any decoding option ("beam": 5, "nbest": 2, "method": "sample",
                          "seed": 1, ...)} -> {"model": name, "translations": [...]}
  GET  /metrics          Prometheus text format (``metrics.ServeMetrics``)
  GET  /docs, /redoc     the OpenAPI pages, their assets served locally (fastapi-offline)

Decoding options are the fields of ``config.DecodeOptions`` (batch_size and
return_attention excepted: "attention" asks for the attention matrix); an
option left out takes the model's own default (``GET /api/models`` lists
them), and every value is checked by DecodeOptions itself, so a bad one gets
the same message as on the command line, with status 422. Unknown fields are
refused (422). "tree" (beam search only) returns the search as a tree.
Requests are decoded by one worker thread per model that batches compatible
requests together (``batching.py``) within the budgets of ``limits.py``.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import typing
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import ConfigDict, Field, create_model

from ..config import DecodeOptions
from ..ensembles import Ensemble
from ..errors import ConfigError
from ..translator import Translator
from .batching import Job, ModelWorker, Unavailable
from .limits import ServeLimits, request_cost
from .metrics import CONTENT_TYPE, ServeMetrics

STATIC = Path(__file__).resolve().parent / "static"
SERVER_OPTIONS = tuple(f.name for f in dataclasses.fields(DecodeOptions)
                       if f.name not in ("batch_size", "return_attention"))
INLINE_CHARS = 4096
"""Requests with fewer characters are tokenized on the event loop, larger ones in a thread."""


def _request_model():
    """The request body: texts, model, attention, tree, and one optional field per decoding option."""
    hints = typing.get_type_hints(DecodeOptions)
    options = {name: (typing.Optional[hints[name]], None) for name in SERVER_OPTIONS}
    return create_model(
        "TranslateRequest", __config__=ConfigDict(extra="forbid"),
        texts=(list[str], Field(..., description="sentences to translate, one per item")),
        model=(str | None, Field(None, description="model name (default: the first one)")),
        attention=(bool, Field(False, description="return the attention matrix of the best output")),
        tree=(bool, Field(False, description="return the beam search as a tree (method 'beam' only)")),
        **options)


TranslateRequest = _request_model()


def _describe(name: str, translator) -> dict:
    """One model's entry of GET /api/models: its architecture and decoding defaults
    (an ensemble's: its first member's, the members' total parameters, "ensemble" N;
    "rescorers": how many models re-rank its beam)."""
    cfg = translator.config
    return {
        "name": name,
        "family": cfg.model.family,
        "cell": cfg.model.cell,
        "attention": cfg.model.attention if cfg.model.family == "luong" else
        ("additive" if cfg.model.family == "bahdanau" else None),
        "beam": cfg.search.beam,
        "search": {name: getattr(cfg.search, name) for name in SERVER_OPTIONS},
        "parameters": translator.model.num_parameters(),
        "ensemble": len(translator.model.members) if isinstance(translator.model, Ensemble) else 1,
        "rescorers": len(translator.rescorers),
    }


def _check_size(texts: list[str], limits: ServeLimits) -> None:
    """HTTP 422 for no texts, 413 for too many texts or a too long one."""
    if not texts:
        raise HTTPException(status_code=422, detail="'texts' is empty: send at least one sentence")
    if len(texts) > limits.max_texts:
        raise HTTPException(status_code=413, detail=f"{len(texts)} texts: at most {limits.max_texts} "
                                                    f"texts per request here (max_texts)")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise HTTPException(status_code=413, detail=f"texts[{i}] is longer than {limits.max_chars} "
                                                        f"characters (max_chars)")


def _options(req, translator, limits: ServeLimits) -> DecodeOptions:
    """The request's checked decoding options (HTTP 422 naming the problem). Only the
    options that differ from the model's are changed (and checked again)."""
    base = translator.config.search
    changes = {name: getattr(req, name) for name in SERVER_OPTIONS
               if getattr(req, name) is not None and getattr(req, name) != getattr(base, name)}
    if changes.get("beam", 0) > limits.max_beam or changes.get("nbest", 0) > limits.max_beam:
        raise HTTPException(status_code=422, detail=f"beam and nbest are at most {limits.max_beam} "
                                                    f"here (max_beam)")
    try:
        if req.attention != base.return_attention:
            changes["return_attention"] = req.attention
        opts = translator.options(**changes)
    except ConfigError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    if req.tree and opts.method != "beam":
        raise HTTPException(status_code=422, detail=f"'tree' needs method 'beam' (got '{opts.method}')")
    return opts


def _result(tr, with_attention: bool, tree: dict | None) -> dict:
    """One Translation as JSON (attention and tree only when asked)."""
    out = {"text": tr.text, "score": tr.score, "nbest": [{"text": t, "score": s} for t, s in tr.nbest]}
    if with_attention:
        out.update(src_tokens=tr.src_tokens, tokens=tr.tokens, attention=tr.attention)
    if tree is not None:
        out["tree"] = tree
    return out


async def _tokenize(translator, texts: list[str]) -> list:
    """The texts' sources (``Translator.tokenize``): inline when small, else in a thread."""
    if sum(map(len, texts)) < INLINE_CHARS:
        return translator.tokenize(texts)
    return await asyncio.to_thread(translator.tokenize, texts)


async def _decode(worker: ModelWorker, req, opts: DecodeOptions) -> Job:
    """Run one checked request through the model's worker within the budgets:
    413 over max_request_tokens, 429 over max_tokens_in_flight, 504 past timeout_s."""
    translator, limits = worker.translator, worker.limits
    sources = await _tokenize(translator, req.texts)
    cost = request_cost([len(s.ids) for s in sources], opts)
    if cost > limits.max_request_tokens:
        raise HTTPException(status_code=413, detail=f"this request needs {cost} source tokens x beam; "
                                                    f"at most {limits.max_request_tokens} here "
                                                    f"(max_request_tokens): send fewer or shorter texts")
    if not worker.admit(cost):
        raise HTTPException(status_code=429, headers={"Retry-After": "1"},
                            detail=f"model '{worker.name}' is busy: more than {limits.max_tokens_in_flight} "
                                   f"tokens x beam in flight (max_tokens_in_flight); retry shortly")
    generator = translator.generator(opts.seed) if opts.method == "sample" else None
    job = Job(sources, opts, req.tree, asyncio.get_running_loop().create_future(), generator)
    try:
        worker.submit(job)
        return await asyncio.wait_for(job.future, limits.timeout_s)
    except Unavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except asyncio.TimeoutError:
        worker.cancel(job)
        raise HTTPException(status_code=504, detail=f"decoding took longer than {limits.timeout_s:g} s "
                                                    f"(timeout_s); send fewer texts or a smaller beam") from None
    except asyncio.CancelledError:
        worker.cancel(job)
        raise
    finally:
        worker.release(cost)


class MetricsMiddleware:
    """Counts every HTTP request by endpoint (route path) and status, and its latency."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def create_app(translators: dict, limits: ServeLimits | None = None) -> FastAPI:
    """Build the app; ``translators`` maps a model name to a loaded Translator.
    One worker thread per model starts with the first request and stops with the app."""
    if not translators:
        raise ValueError("create_app needs at least one model")
    limits = limits or ServeLimits()
    metrics = ServeMetrics()
    workers = {name: ModelWorker(name, tr, limits, metrics) for name, tr in translators.items()}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for worker in workers.values():
            worker.stop()

    app = FastAPIOffline(title="transduce", description="Recurrent seq2seq models over HTTP", lifespan=lifespan)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _routes(app, workers, limits, metrics)
    return app


def _routes(app: FastAPI, workers: dict[str, ModelWorker], limits: ServeLimits, metrics: ServeMetrics) -> None:
    """The page, the JSON API and /metrics."""
    default = next(iter(workers))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok", "models": len(workers)}

    @app.get("/api/models")
    async def models() -> list[dict]:
        return [_describe(name, w.translator) for name, w in workers.items()]

    @app.get("/api/limits")
    async def get_limits() -> dict:
        return dataclasses.asdict(limits)

    @app.get("/metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/api/translate")
    async def translate(req: TranslateRequest) -> JSONResponse:
        """Translate ``texts`` with the request's decoding options (see the module docstring)."""
        name = req.model or default
        if name not in workers:
            raise HTTPException(status_code=404, detail=f"unknown model '{name}' (have: {', '.join(workers)})")
        _check_size(req.texts, limits)
        opts = _options(req, workers[name].translator, limits)
        try:
            job = await _decode(workers[name], req, opts)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 -- the model failed on this batch; the server goes on
            raise HTTPException(status_code=500, detail=f"decoding failed: {type(exc).__name__}: {exc}") from None
        trees = job.trees if req.tree else [None] * len(job.results)
        return JSONResponse({"model": name, "translations": [_result(tr, req.attention, t)
                                                             for tr, t in zip(job.results, trees)]})


def model_names(dirs: list[str]) -> list[str]:
    """Unique short names for model folders (folder name, then parent/name on clashes)."""
    names = []
    for d in dirs:
        path = Path(d).resolve()
        name = path.name
        if name in names:
            name = f"{path.parent.name}/{path.name}"
        names.append(name)
    return names


def run_server(model_dirs: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
               limits: ServeLimits | None = None) -> None:
    """Load the models and serve them with uvicorn until interrupted."""
    import uvicorn

    translators = {name: Translator.from_dir(d, device=device)
                   for name, d in zip(model_names(model_dirs), model_dirs)}
    print(f"transduce serve: {', '.join(translators)} on http://{host}:{port}/")
    uvicorn.run(create_app(translators, limits), host=host, port=port, log_level="warning")
