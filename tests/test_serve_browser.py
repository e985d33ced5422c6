"""The web page in a real browser: Debian's chromium, headless, driven by Playwright
(never a browser download), against a live server; nothing but 127.0.0.1 is reachable.

Screenshots are saved as test artefacts in the test's tmp folder (the path is printed).
"""
from __future__ import annotations

import dataclasses
import shutil

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from live_server import LiveServer  # noqa: E402

from transduce.cli import main  # noqa: E402
from transduce.serve.app import create_app  # noqa: E402
from transduce.translator import Translator  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def models(tmp_path_factory, toy_overrides) -> dict:
    """Two toy models; the second with other search defaults (beam 4, n-best 2)."""
    out = tmp_path_factory.mktemp("browser") / "toy"
    assert main(["train", "toy", *toy_overrides, "--out", str(out)]) == 0
    first, second = Translator.from_dir(out), Translator.from_dir(out)
    second.config = dataclasses.replace(second.config, search=second.options(beam=4, nbest=2))
    return {"toy": first, "toy-beam4": second}


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {CHROMIUM} cannot be launched: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, models):
    """A page on a live server, every request to another host refused (and recorded)."""
    with LiveServer(create_app(models)) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.outside = []

        def only_local(route):
            if route.request.url.startswith(url):
                return route.continue_()
            page.outside.append(route.request.url)
            return route.abort()

        page.route("**/*", only_local)
        page.base = url
        yield page
        context.close()


def test_page_translates_and_shows_heatmap_and_beam_tree(page, models, tmp_path):
    page.goto(page.base + "/")
    page.wait_for_selector("#model option", state="attached")
    page.fill("#beam", "3")
    page.fill("#nbest", "2")
    page.fill("#input", "1 2 3 4")
    page.click("#go")
    page.wait_for_selector(".card")
    want = models["toy"].translate(["1 2 3 4"], beam=3, nbest=2, return_attention=True)[0]
    assert page.inner_text(".translation") == (want.text or "(empty output)")
    assert page.locator("table.nbest tr").count() == 3  # header + 2 hypotheses
    cells = page.locator("svg.heatmap rect.cell")
    assert cells.count() == len(want.tokens) * len(want.src_tokens) > 0
    cells.first.hover()
    assert "←" in page.inner_text(".readout")
    assert page.locator("svg.beamtree .node").count() > 3
    assert page.locator("svg.beamtree .node.path").count() >= 2
    assert page.locator("svg.beamtree .edge.path").count() >= 1
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide figures scroll in their box
    page.screenshot(path=str(tmp_path / "page-390px.png"), full_page=True)
    print(f"screenshots: {tmp_path / 'page.png'} {tmp_path / 'page-390px.png'}")
    assert page.outside == []


def test_model_switch_takes_its_defaults_and_errors_replace_results(page):
    page.goto(page.base + "/")
    page.wait_for_selector("#model option", state="attached")
    assert page.input_value("#beam") == "1"
    page.select_option("#model", "toy-beam4")
    assert page.input_value("#beam") == "4" and page.input_value("#nbest") == "2"
    page.fill("#input", "1 2")
    page.click("#go")
    page.wait_for_selector(".card")
    page.fill("#nbest", "9")
    page.click("#go")
    page.wait_for_selector(".err")
    assert "nbest" in page.inner_text(".err") and page.locator(".card").count() == 0


def test_docs_load_offline(page):
    page.goto(page.base + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    assert "/api/translate" in page.inner_text(".swagger-ui")
    assert page.outside == []
