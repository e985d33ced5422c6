"""A FastAPI app over one or more :class:`~transduce.translator.Translator`.

Endpoints:
  GET  /                 the web page
  GET  /api/health       {"status": "ok"}
  GET  /api/models       the loaded models and their default search settings
  POST /api/translate    {"texts": [...], "model": name, "beam": 5, "nbest": 1,
                          "attention": false} -> {"model": name, "translations": [...]}
"""
from __future__ import annotations

import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXTS = 256
MAX_CHARS = 2000
MAX_BEAM = 32


class TranslateRequest(BaseModel):
    texts: list[str] = Field(..., description="sentences to translate, one per item")
    model: str | None = Field(None, description="model name (default: the first one)")
    beam: int | None = Field(None, ge=1, le=MAX_BEAM)
    nbest: int = Field(1, ge=1, le=MAX_BEAM)
    attention: bool = False


def _describe(name: str, translator) -> dict:
    cfg = translator.config
    return {
        "name": name,
        "family": cfg.model.family,
        "cell": cfg.model.cell,
        "attention": cfg.model.attention if cfg.model.family == "luong" else
        ("additive" if cfg.model.family == "bahdanau" else None),
        "beam": cfg.search.beam,
        "parameters": translator.model.num_parameters(),
    }


def _check(req: TranslateRequest) -> None:
    if not req.texts:
        raise HTTPException(status_code=422, detail="'texts' is empty: send at least one sentence")
    if len(req.texts) > MAX_TEXTS:
        raise HTTPException(status_code=422, detail=f"at most {MAX_TEXTS} texts per request")
    for i, text in enumerate(req.texts):
        if len(text) > MAX_CHARS:
            raise HTTPException(status_code=422, detail=f"texts[{i}] is longer than {MAX_CHARS} characters")
    if req.nbest > (req.beam or req.nbest):
        raise HTTPException(status_code=422, detail="nbest cannot exceed beam")


def _result(tr, with_attention: bool) -> dict:
    out = {"text": tr.text, "score": tr.score, "nbest": [{"text": t, "score": s} for t, s in tr.nbest]}
    if with_attention:
        att = tr.attention
        out.update(src_tokens=tr.src_tokens, tokens=tr.tokens,
                   attention=att.tolist() if hasattr(att, "tolist") else att)
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
        _check(req)
        beam = req.beam or max(req.nbest, translators[name].config.search.beam)
        with locks[name]:  # one request at a time per model: torch already uses every core
            results = translators[name].translate(req.texts, beam=beam, nbest=req.nbest,
                                                  return_attention=req.attention)
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

    from ..translator import Translator

    translators = {name: Translator.from_dir(d, device=device)
                   for name, d in zip(model_names(model_dirs), model_dirs)}
    print(f"transduce serve: {', '.join(translators)} on http://{host}:{port}/")
    uvicorn.run(create_app(translators), host=host, port=port, log_level="warning")
