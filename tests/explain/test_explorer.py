"""The explorer file without a browser: one self-contained file (no external reference of any kind), its embedded
attention decodes back to the model's probabilities within the stated rounding, any text is safe inside it, and a
32-token pair on a 12-layer, 12-head model stays a few hundred KB. (test_explorer_browser.py opens it for real.)"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

from minibert.errors import InputError
from minibert.explain.explorer import SCALE, render_html, write_explorer
from minibert.explain.journey import explain
from minibert.explain.loading import LoadedModel

PAIR_32 = ("the capital of france is [MASK] and it is a large city on the seine.",
           "many people visit its museums and its old bridges every single year.")


def embedded_data(html: str) -> dict:
    match = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, flags=re.DOTALL)
    assert match, "the page should hold its data in one JSON script element"
    return json.loads(match.group(1))


def test_page_is_self_contained(minilm):
    html = render_html(explain(minilm, "the capital of france is [MASK].", "paris is lovely."))
    assert not re.search(r"""\b(src|href)\s*=\s*["'](?!data:)""", html), "no src/href except data: URLs"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html), "no URL except the SVG namespace name"
    assert not re.search(r"@import|url\(|fetch\(|XMLHttpRequest|import\(", html), "nothing fetched at run time"
    assert html.count("<script") == 2 and html.count("<style") == 1, "data, script and style inline"


def test_embedded_attention_decodes_to_the_models_probabilities(minilm):
    journey = explain(minilm, "the capital of france is [MASK].", "paris is lovely.")
    data = embedded_data(render_html(journey))
    layers, heads, tokens = data["layers"], data["heads"], len(data["tokens"])
    raw = np.frombuffer(base64.b64decode(data["attention"]), dtype=np.uint8)
    assert raw.size == layers * heads * tokens * tokens, "one byte per probability"
    decoded = torch.from_numpy(raw.reshape(layers, heads, tokens, tokens).astype(np.float32)) / data["scale"]
    expected = torch.stack([layer.attention for layer in journey.trace.layers])
    assert (decoded - expected).abs().max().item() <= 0.5 / SCALE + 1e-6, "rounding to 1/255 at most"
    assert data["tokens"] == journey.tokens and data["segments"] == [p.segment for p in journey.pieces]
    norms = [journey.trace.embeddings] + [layer.output for layer in journey.trace.layers]
    assert np.allclose(data["norms"], [n.norm(dim=-1).tolist() for n in norms], atol=0.006), "hidden-state norms"


def test_any_text_is_safe_inside_the_page(minilm):
    text = '</script><script>alert(1)</script> "quotes" & <b>'
    html = render_html(explain(minilm, text))
    assert html.count("</script>") == 2, "a token must not be able to close a script element"
    assert embedded_data(html)["text"] == text, "the text survives the escaping unchanged"


def test_size_of_a_32_token_pair_on_12_layers(minilm, tmp_path):
    """12 layers of 12 heads (bert-base's attention shape; the hidden size does not change the file) and a 32-token
    pair: the file must stay a few hundred KB. The measured size is printed (pytest -s)."""
    from minibert.config import BertConfig
    from minibert.model import BertModel
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=96, num_hidden_layers=12, num_attention_heads=12, intermediate_size=192))
    journey = explain(LoadedModel("random 12x12", model.eval(), minilm.tokenizer, None, []), *PAIR_32)
    assert len(journey.tokens) == 32, f"the pair should be 32 tokens, got {len(journey.tokens)}"
    size = write_explorer(journey, tmp_path / "page.html").stat().st_size
    print(f"explorer for a 32-token pair, 12 layers x 12 heads: {size:,} bytes")
    assert size <= 300_000, f"{size:,} bytes: too big to mail"
    assert size >= 12 * 12 * 32 * 32 * 4 / 3, "every probability should be in the file"


def test_unwritable_path_is_refused_before_writing(minilm, tmp_path):
    journey = explain(minilm, "hello")
    (tmp_path / "a-file").write_text("keep me")
    with pytest.raises(InputError, match=r"cannot be written \(.*a-file is a file\)"):
        write_explorer(journey, tmp_path / "a-file" / "page.html")
    with pytest.raises(InputError, match="is a folder"):
        write_explorer(journey, tmp_path)
    assert (tmp_path / "a-file").read_text() == "keep me"
