"""`minibert explain --html FILE`: the attention explorer, one self-contained HTML file.

The page (explorer.html, beside this file) holds its script and style inline and loads nothing: it opens from disk,
offline, in any browser. It has a head view (one layer, chosen heads, a line per query-key pair), a model view (every
layer x head as a small matrix) and the hidden-state norms per layer, with the sentence-pair boundary marked.

Attention probabilities travel as one byte each (round(p * 255), base64): a 32-token pair on a 12-layer, 12-head
model is 147,456 probabilities, about 200 KB, small enough to mail. The page shows p to within 1/510.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import torch

from minibert.errors import InputError
from minibert.explain.journey import Journey
from minibert.explain.report import heads_lines
from minibert.plumbing.atomic_files import atomic_write_text, check_output_file

TEMPLATE = Path(__file__).with_name("explorer.html")
PLACEHOLDER = "/*DATA*/"
SCALE = 255  # attention probability p is stored as round(p * SCALE) in one byte


def quantize(attentions: list[torch.Tensor]) -> bytes:
    """Per layer (H, T, T) probabilities -> bytes laid out [layer][head][query][key]."""
    stacked = torch.stack([a.float() for a in attentions])  # L x (H, T, T) -> (L, H, T, T)
    return (stacked * SCALE).round().clamp(0, SCALE).to(torch.uint8).cpu().numpy().tobytes()


def page_data(journey: Journey) -> dict:
    trace = journey.trace
    hidden = [trace.embeddings] + [layer.output for layer in trace.layers]  # hidden_states, (T, D) each
    return {
        "source": journey.source, "modelClass": journey.model_class, "text": journey.text, "pair": journey.pair,
        "tokens": journey.tokens, "segments": [p.segment for p in journey.pieces],
        "layers": len(trace.layers), "heads": journey.config.num_attention_heads, "scale": SCALE,
        "attention": base64.b64encode(quantize([layer.attention for layer in trace.layers])).decode("ascii"),
        "norms": [[round(v, 2) for v in h.float().norm(dim=-1).tolist()] for h in hidden],
        "summary": [line.strip() for line in heads_lines(journey)],
    }


def render_html(journey: Journey) -> str:
    # "<" escaped inside the JSON, so no token text can close the <script> element that holds it.
    data = json.dumps(page_data(journey), ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return TEMPLATE.read_text(encoding="utf-8").replace(PLACEHOLDER, data, 1)


def write_explorer(journey: Journey, path: str | os.PathLike) -> Path:
    """Write the explorer to `path` (atomically: an interrupted run leaves the previous file)."""
    path = check_output_file(path, "--html")
    try:
        atomic_write_text(path, render_html(journey))
    except OSError as e:
        raise InputError(f"--html {path}: cannot write ({e.strerror})") from None
    return path
