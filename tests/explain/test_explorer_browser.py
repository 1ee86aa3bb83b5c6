"""The attention explorer in a real headless browser (Debian's chromium, driven by selenium), as a person uses it:
opened from a file:// path, offline, with no console error and no network request; choosing a layer and a head
redraws the lines, whose weights read back from the DOM equal the probabilities the model returned; hovering a token
isolates its lines; the model view has every layer x head and opens a cell in the head view.

Screenshots of the head and model views go to the test's tmp folder; with MINIBERT_DOCS_SCREENSHOTS=docs/img they
are also copied there (how the README's and the reading guide's pictures are made). A missing browser fails the
test with the command that installs it: `make setup` does, on a fresh Debian machine."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from minibert.explain.explorer import SCALE, write_explorer
from minibert.explain.journey import explain

TEXT, PAIR = "the capital of france is [MASK].", "paris is a lovely city on the seine."
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--window-size=1400,1000"]
INSTALL = "run `make setup` (as root it installs them) or `apt-get install -y chromium chromium-driver`"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.fail(f"the explorer test needs a real browser: chromium={chromium}, chromedriver={chromedriver}; "
                    f"{INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the explorer test needs selenium: pip install -e '.[test]' (make setup does)")
    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(minilm, tmp_path_factory):
    """The explorer for a sentence pair on the real all-MiniLM-L6-v2, and the model's own attentions for it."""
    named = dataclasses.replace(minilm, source="all-MiniLM-L6-v2")  # the page's title line, without a local path
    path = write_explorer(explain(named, TEXT, PAIR), tmp_path_factory.mktemp("explorer") / "explorer.html")
    batch = minilm.tokenizer([TEXT], [PAIR])
    with torch.inference_mode():
        out = minilm.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                           output_hidden_states=True, output_attentions=True)
    return path, out


def open_page(browser, path: Path) -> str:
    url = path.resolve().as_uri()
    browser.get_log("performance")  # drop what the browser did before this page (its start-up tab)
    browser.get_log("browser")
    browser.get(url)
    return url


def drawn_lines(browser) -> list[dict]:
    """Every line of the head view as the page holds it, visible or not."""
    return browser.execute_script("""
        return [...document.querySelectorAll('#attention-lines line')].map(line => ({
            head: Number(line.dataset.head), from: Number(line.dataset.from), to: Number(line.dataset.to),
            weight: Number(line.dataset.weight), opacity: Number(line.getAttribute('stroke-opacity')),
            visible: getComputedStyle(line).display !== 'none'}));""")


def save_screenshot(browser, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert browser.save_screenshot(str(path)), f"could not save {name}"
    assert path.stat().st_size > 10_000, f"{name} looks empty"
    docs = os.environ.get("MINIBERT_DOCS_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(docs) / name)
    return path


def test_loads_offline_without_errors(browser, page):
    url = open_page(browser, page[0])
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert not errors, f"console errors: {errors}"
    events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    requests = [m["params"] for m in events if m["method"] == "Network.requestWillBeSent"]
    # The browser's own start-up tab (chrome:// pages) may still log; what this page asks for names it as document.
    ours = [r["request"]["url"] for r in requests if r.get("documentURL") == url or r["request"]["url"] == url]
    assert url in ours and all(u == url or u.startswith("data:") for u in ours), f"the page requested {ours}"
    network = [r["request"]["url"] for r in requests if not r["request"]["url"].startswith(("file:", "data:",
                                                                                          "chrome:"))]
    assert network == [], f"network requests: {network}"
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == [], f"the page fetched {resources}"
    assert browser.execute_script("return location.protocol") == "file:"


def test_choosing_a_layer_and_a_head_draws_the_models_probabilities(browser, page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    path, out = page
    open_page(browser, path)
    before = drawn_lines(browser)
    layer, head = 0, 2  # layer 1, head 3 as the page numbers them: each token looks at the one before it
    Select(browser.find_element(By.ID, "layer")).select_by_value(str(layer))
    browser.find_element(By.ID, "no-heads").click()
    assert drawn_lines(browser) == [], "with no head chosen, no line is drawn"
    browser.find_element(By.CSS_SELECTOR, f"input.head[data-head='{head}']").click()
    lines = drawn_lines(browser)
    assert lines != before, "choosing a layer and a head should redraw the lines"
    assert {line["head"] for line in lines} == {head}, "only the chosen head's lines"
    assert browser.execute_script("return document.getElementById('attention-lines').dataset.layer") == str(layer)

    probs = out.attentions[layer][0, head]  # (T, T), straight from the model
    tokens = probs.shape[0]
    drawn = {(line["from"], line["to"]): line for line in lines}
    for q in range(tokens):
        for k in range(tokens):
            p = float(probs[q, k])
            if (q, k) in drawn:
                assert drawn[(q, k)]["weight"] == pytest.approx(p, abs=0.5 / SCALE + 1e-6), f"line {q}->{k}"
                assert drawn[(q, k)]["opacity"] == pytest.approx(p, abs=0.5 / SCALE + 1e-4), "opacity = weight"
            else:
                assert p < 0.5 / SCALE, f"{q}->{k} has probability {p:.4f} but no line"
    save_screenshot(browser, tmp_path, "explorer-head-view.png")

    # Hovering a query token keeps only its lines.
    from selenium.webdriver.common.action_chains import ActionChains
    token = 4
    ActionChains(browser).move_to_element(
        browser.find_element(By.CSS_SELECTOR, f"text.token.left[data-index='{token}']")).perform()
    visible = [line for line in drawn_lines(browser) if line["visible"]]
    assert visible and {line["from"] for line in visible} == {token}, "hover isolates the token's lines"
    assert sum(line["weight"] for line in visible) == pytest.approx(1.0, abs=tokens / SCALE), "a row sums to 1"
    ActionChains(browser).move_by_offset(0, 400).perform()
    assert all(line["visible"] for line in drawn_lines(browser)), "leaving the token shows every line again"


def test_model_view_shows_every_layer_and_head(browser, page, minilm, tmp_path):
    from selenium.webdriver.common.by import By
    open_page(browser, page[0])
    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab='model-view']").click()
    cells = browser.find_elements(By.CSS_SELECTOR, "#grid canvas")
    config = minilm.model.config
    assert len(cells) == config.num_hidden_layers * config.num_attention_heads, "one cell per layer x head"
    assert browser.find_element(By.ID, "model-view").is_displayed()
    save_screenshot(browser, tmp_path, "explorer-model-view.png")

    browser.find_element(By.CSS_SELECTOR, "#grid canvas[data-layer='3'][data-head='5']").click()
    assert browser.find_element(By.ID, "head-view").is_displayed(), "a click opens the head view"
    assert browser.execute_script("return document.getElementById('layer').value") == "3"
    assert {line["head"] for line in drawn_lines(browser)} == {5}, "with that cell's head alone"


def test_norms_view_shows_the_hidden_state_norms(browser, page, tmp_path):
    from selenium.webdriver.common.by import By
    path, out = page
    open_page(browser, path)
    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab='norms-view']").click()
    cells = browser.execute_script("""return [...document.querySelectorAll('#norms-svg rect[data-norm]')]
        .map(r => [Number(r.dataset.row), Number(r.dataset.token), Number(r.dataset.norm)]);""")
    expected = torch.stack([h[0].norm(dim=-1) for h in out.hidden_states])  # (L + 1, T)
    assert len(cells) == expected.numel(), "a cell per hidden state and token"
    for row, token, norm in cells:
        assert norm == pytest.approx(float(expected[row, token]), abs=0.006), f"norm at row {row}, token {token}"
    save_screenshot(browser, tmp_path, "explorer-norms.png")
