"""The search page at ``/`` in a real headless browser: Debian's chromium + chromedriver, driven by selenium.

The browser comes from apt (``make browser``: ``apt-get install chromium chromium-driver``); these tests
skip with the reason when selenium, chromium or chromedriver is missing. Selenium is given both paths,
so it never tries to download a browser or a driver.

``EMBEDLAB_PAGE_SCREENSHOT=docs/serving_page.png pytest tests/serve/test_page.py -k docs`` regenerates the
screenshot in docs/serving.md: minilm-l6 over 300 SciFact abstracts (needs the data directory).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import cosines
from tests.serve.conftest import TEXTS, running

pytestmark = pytest.mark.slow

HEAT_TEXTS = TEXTS[:5]
WAIT_S = 30


def _browser_paths() -> tuple[str | None, str | None]:
    chrome = os.environ.get("EMBEDLAB_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = os.environ.get("EMBEDLAB_CHROMEDRIVER") or shutil.which("chromedriver")
    return chrome, driver


@pytest.fixture(scope="module")
def browser() -> Any:
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chrome, driver = _browser_paths()
    if not chrome or not driver:
        pytest.skip(
            "no chromium or chromedriver on PATH: run `make browser` "
            "(apt-get install chromium chromium-driver) or set EMBEDLAB_CHROMIUM / EMBEDLAB_CHROMEDRIVER"
        )
    options = Options()
    options.binary_location = chrome
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1000",
        "--force-device-scale-factor=1",
        "--no-first-run",
    ):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    drv.set_page_load_timeout(WAIT_S)
    try:
        yield drv
    finally:
        drv.quit()


def _wait(drv: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(drv, WAIT_S).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out waiting for {what}; the page says: {drv.find_element('tag name', 'body').text[:500]!r}"
        ) from None


def _search(drv: Any, url: str, query: str, k: int) -> list[tuple[str, str]]:
    """Load the page, search; returns the (id, score text) of each hit row."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    drv.get(url + "/")
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#index option"), "the index list (GET /v1/models)")
    button = _wait(drv, ec.element_to_be_clickable((By.ID, "search-btn")), "the search button")
    box = drv.find_element(By.ID, "query")
    box.clear()
    box.send_keys(query)
    k_box = drv.find_element(By.ID, "k")
    k_box.clear()
    k_box.send_keys(str(k))
    button.click()
    _wait(
        drv,
        lambda d: d.find_element(By.ID, "hits").is_displayed() and d.find_elements(By.CSS_SELECTOR, "#hits tbody tr"),
        "hits",
    )
    rows = drv.find_elements(By.CSS_SELECTOR, "#hits tbody tr")
    out = []
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        assert row.find_elements(By.CSS_SELECTOR, "span.bar"), "every hit has a score bar"
        out.append((cells[1].text, cells[2].text.strip()))
    return out


def _heat_map(drv: Any, texts: list[str]) -> np.ndarray:
    """Type ``texts`` into the heat-map box, compare; returns the cosines the page shows (data-value)."""
    from selenium.webdriver.common.by import By

    area = drv.find_element(By.ID, "texts")
    area.clear()
    area.send_keys("\n".join(texts))
    drv.find_element(By.ID, "heat-btn").click()
    _wait(drv, lambda d: d.find_element(By.ID, "heat").is_displayed(), "the heat map")
    assert drv.find_element(By.ID, "heat-msg").text == ""
    cells = drv.find_elements(By.CSS_SELECTOR, "#heat td.cell")
    assert len(cells) == len(texts) ** 2, f"{len(cells)} cells for {len(texts)} texts"
    rows = drv.find_elements(By.CSS_SELECTOR, "#heat tbody tr")
    assert len(rows) == len(texts)
    assert all(c.value_of_css_property("background-color") not in ("", "rgba(0, 0, 0, 0)") for c in cells)
    return np.array([float(c.get_attribute("data-value")) for c in cells]).reshape(len(texts), len(texts))


def _screenshot(drv: Any, path: Path) -> None:
    """A full-page screenshot: the window grows to the page's height first."""
    height = int(drv.execute_script("return Math.ceil(document.documentElement.scrollHeight)"))
    frame = drv.get_window_size()["height"] - int(drv.execute_script("return window.innerHeight"))
    drv.set_window_size(1200, min(max(height + frame, 600), 4000))
    assert drv.save_screenshot(str(path)), f"no screenshot written to {path}"


@pytest.fixture(scope="module")
def tiny_index(tiny_emb, tmp_path_factory):
    from embedlab.index import VectorIndex

    corpus = TEXTS + [f"{a} {b}" for a in TEXTS[:4] for b in TEXTS[4:]]
    model = {"name": "tiny", "fingerprint": tiny_emb.fingerprint()}
    index = VectorIndex.build(
        tiny_emb.encode(corpus), [f"d{i}" for i in range(len(corpus))], "float32", texts=corpus, model=model
    )
    return {"docs": index}


def test_page_search_and_heat_map_match_the_api(browser, tiny_emb, tiny_index, tmp_path):
    with running(tiny_emb, indexes=tiny_index) as srv:
        query = "a red car in the house"
        shown = _search(browser, srv.url, query, k=6)
        api = httpx.post(srv.url + "/v1/search", json={"index": "docs", "query": query, "k": 6}, timeout=30).json()
        hits = api["data"][0]["hits"]
        assert [i for i, _ in shown] == [h["id"] for h in hits]
        for (_, text), hit in zip(shown, hits):
            assert abs(float(text) - hit["score"]) <= 6e-5, (text, hit["score"])
        msg = browser.find_element("id", "search-msg").text
        assert msg.startswith(f"{len(hits)} hits"), msg

        sim = _heat_map(browser, HEAT_TEXTS)
        res = httpx.post(srv.url + "/v1/embeddings", json={"input": HEAT_TEXTS}, timeout=30).json()
        vectors = np.array([d["embedding"] for d in sorted(res["data"], key=lambda d: d["index"])])
        n = len(HEAT_TEXTS)
        expected = np.array([[cosines(vectors[i : i + 1], vectors[j : j + 1])[0] for j in range(n)] for i in range(n)])
        np.testing.assert_allclose(sim, expected, atol=2e-6)
        np.testing.assert_allclose(np.diag(sim), 1.0, atol=2e-6)
        np.testing.assert_allclose(sim, sim.T, atol=2e-6)
        _screenshot(browser, tmp_path / "page.png")
        assert (tmp_path / "page.png").stat().st_size > 10_000


def test_page_without_an_index_says_so(browser, tiny_emb):
    from selenium.webdriver.common.by import By

    with running(tiny_emb) as srv:
        browser.get(srv.url + "/")
        _wait(
            browser, lambda d: "No index is loaded" in d.find_element(By.ID, "search-msg").text, "the no-index notice"
        )
        assert not browser.find_element(By.ID, "search-btn").is_enabled()
        assert "tiny" in browser.find_element(By.ID, "model").text


def test_screenshot_for_docs(browser, tmp_path):
    """Regenerates docs/serving_page.png when EMBEDLAB_PAGE_SCREENSHOT names the output file."""
    out = os.environ.get("EMBEDLAB_PAGE_SCREENSHOT")
    if not out:
        pytest.skip("set EMBEDLAB_PAGE_SCREENSHOT=docs/serving_page.png to regenerate the docs screenshot")
    import gzip
    import json

    import embedlab
    from embedlab.index import VectorIndex
    from embedlab.settings import data_dir

    root = data_dir()
    corpus_file = root / "scifact" / "corpus.jsonl.gz" if root else None
    if corpus_file is None or not corpus_file.is_file():
        pytest.skip("the SciFact corpus is missing: set EMBEDLAB_DATA")
    docs = [json.loads(line) for line in gzip.open(corpus_file, "rt", encoding="utf-8").read().splitlines()[:300]]
    emb = embedlab.load("minilm-l6")
    vectors = emb.encode([f"{d['title']}. {d['text']}" for d in docs], dtype="fp32")
    shown = [d["title"] for d in docs]  # the page lists the stored texts: titles keep the screenshot readable
    model = {"name": "minilm-l6", "fingerprint": emb.fingerprint()}
    index = VectorIndex.build(vectors, [d["_id"] for d in docs], "int8", texts=shown, model=model)
    with running(emb, model_name="minilm-l6", indexes={"scifact-300": index}) as srv:
        rows = _search(browser, srv.url, "How does the immune system respond to viral infection?", k=5)
        assert len(rows) == 5
        _heat_map(
            browser,
            [
                "A man is playing a guitar.",
                "Someone plays an instrument.",
                "The stock market fell sharply today.",
                "Shares dropped at the close of trading.",
                "A cat sleeps on the sofa.",
            ],
        )
        browser.execute_script("window.scrollTo(0, 0)")
        _screenshot(browser, tmp_path / "page.png")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "page.png", out)
