"""A FastAPI app over one or more :class:`~transduce.translator.Translator`.

Endpoints:
  GET  /                 the web page
  GET  /api/health       {"status": "ok"}
  GET  /api/models       the loaded models and their default search settings
  POST /api/translate    {"texts": [...], "model": name, "attention": false, and any
                          decoding option ("beam": 5, "nbest": 2, "method": "sample",
                          "seed": 1, ...)} -> {"model": name, "translations": [...]}

Decoding options are the fields of ``config.DecodeOptions`` (batch_size and
return_attention excepted: "attention" asks for the attention matrix); an
option left out takes the model's own default (``GET /api/models`` lists
them), and every value is checked by DecodeOptions itself, so a bad one gets
the same message as on the command line, with status 422. Unknown fields are
refused (422).
"""
from __future__ import annotations

import dataclasses
import threading
import typing
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import ConfigDict, Field, create_model

from ..config import DecodeOptions
from ..errors import ConfigError
from ..translator import Translator

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXTS = 256
MAX_CHARS = 2000
MAX_BEAM = 32
SERVER_OPTIONS = tuple(f.name for f in dataclasses.fields(DecodeOptions)
                       if f.name not in ("batch_size", "return_attention"))


def _request_model():
    """The request body: texts, model, attention, and one optional field per decoding option."""
    hints = typing.get_type_hints(DecodeOptions)
    options = {name: (typing.Optional[hints[name]], None) for name in SERVER_OPTIONS}
    return create_model(
        "TranslateRequest", __config__=ConfigDict(extra="forbid"),
        texts=(list[str], Field(..., description="sentences to translate, one per item")),
        model=(str | None, Field(None, description="model name (default: the first one)")),
        attention=(bool, Field(False, description="return the attention matrix of the best output")),
        **options)


TranslateRequest = _request_model()


def _describe(name: str, translator) -> dict:
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
    }


def _options(req, translator) -> DecodeOptions:
    """The request's checked texts and decoding options (HTTP 422 naming the problem)."""
    if not req.texts:
        raise HTTPException(status_code=422, detail="'texts' is empty: send at least one sentence")
    if len(req.texts) > MAX_TEXTS:
        raise HTTPException(status_code=422, detail=f"at most {MAX_TEXTS} texts per request")
    for i, text in enumerate(req.texts):
        if len(text) > MAX_CHARS:
            raise HTTPException(status_code=422, detail=f"texts[{i}] is longer than {MAX_CHARS} characters")
    changes = {name: getattr(req, name) for name in SERVER_OPTIONS if getattr(req, name) is not None}
    if changes.get("beam", 0) > MAX_BEAM or changes.get("nbest", 0) > MAX_BEAM:
        raise HTTPException(status_code=422, detail=f"beam and nbest are at most {MAX_BEAM} here")
    try:
        return translator.options(return_attention=req.attention, **changes)
    except ConfigError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _result(tr, with_attention: bool) -> dict:
    out = {"text": tr.text, "score": tr.score, "nbest": [{"text": t, "score": s} for t, s in tr.nbest]}
    if with_attention:
        out.update(src_tokens=tr.src_tokens, tokens=tr.tokens, attention=tr.attention)
    return out


def create_app(translators: dict) -> FastAPI:
    """Build the app; ``translators`` maps a model name to a loaded Translator."""
    if not translators:
        raise ValueError("create_app needs at least one model")
    app = FastAPI(title="transduce", description="Recurrent seq2seq models over HTTP")
    locks = {name: threading.Lock() for name in translators}
    default = next(iter(translators))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "models": len(translators)}

    @app.get("/api/models")
    def models() -> list[dict]:
        return [_describe(name, tr) for name, tr in translators.items()]

    @app.post("/api/translate")
    def translate(req: TranslateRequest) -> dict:
        name = req.model or default
        if name not in translators:
            raise HTTPException(status_code=404, detail=f"unknown model '{name}' (have: {', '.join(translators)})")
        options = _options(req, translators[name])
        with locks[name]:  # one request at a time per model: torch already uses every core
            results = translators[name].translate(req.texts, options)
        return {"model": name, "translations": [_result(tr, req.attention) for tr in results]}

    return app


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


def run_server(model_dirs: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "cpu") -> None:
    """Load the models and serve them with uvicorn until interrupted."""
    import uvicorn

    translators = {name: Translator.from_dir(d, device=device)
                   for name, d in zip(model_names(model_dirs), model_dirs)}
    print(f"transduce serve: {', '.join(translators)} on http://{host}:{port}/")
    uvicorn.run(create_app(translators), host=host, port=port, log_level="warning")
