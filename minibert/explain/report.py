"""The journey as text: what `minibert explain` prints, one stage after another, each naming the function that
computed it. Layers and heads are counted from 1, as in `minibert parity` (hidden state i = the output of layer i)."""

from __future__ import annotations

import math

from minibert.explain.journey import Journey, LayerJourney, uniform_entropy
from minibert.explain.trace import computed_by

SEGMENT_NAMES = ("A", "B")


def _stage(number: str, title: str, stage: str) -> str:
    return f"\n{number} {title}   [{computed_by(stage)}]"


def _table(journey: Journey, headers: list[str], columns: list[list[float]], digits: int = 2) -> list[str]:
    """One row per token: index, piece, then the columns."""
    width = max(6, min(16, max(len(t) for t in journey.tokens)))
    lines = [f"     {'#':>3}  {'piece':<{width}}" + "".join(f"  {h:>14}" for h in headers)]
    for i, token in enumerate(journey.tokens):
        values = "".join(f"  {_number(c[i], digits):>14}" for c in columns)
        lines.append(f"     {i:>3}  {token[:width]:<{width}}{values}")
    return lines


def _number(value: float, digits: int) -> str:
    return "not computed" if math.isnan(value) else f"{value:.{digits}f}"


def _header(journey: Journey) -> list[str]:
    c = journey.config
    lines = [f"minibert explain: {journey.source}",
             f"model: {journey.model_class}, {c.num_hidden_layers} layers, {c.num_attention_heads} heads of "
             f"{c.head_size}, hidden {c.hidden_size}, feed-forward {c.intermediate_size} ({c.hidden_act}), "
             f"vocabulary {c.vocab_size}",
             f"text: {journey.text!r}"]
    if journey.pair is not None:
        lines.append(f"pair: {journey.pair!r}")
    if journey.masked_heads:
        lines.append("masked heads (output zeroed before attention.output): "
                     + ", ".join(f"layer {layer + 1} head {head + 1}" for layer, head in journey.masked_heads))
    return lines


def _wordpiece(journey: Journey) -> list[str]:
    width = max(6, min(16, max(len(t) for t in journey.tokens)))
    lines = [_stage("1.", "WordPiece: pieces, ids, segments, positions", "wordpiece"),
             f"     {'#':>3}  {'piece':<{width}}  {'id':>7}  segment  position"]
    for p in journey.pieces:
        lines.append(f"     {p.position:>3}  {p.text[:width]:<{width}}  {p.id:>7}  {SEGMENT_NAMES[p.segment]:>7}  "
                     f"{p.position:>8}")
    if journey.word_splits:
        lines.append("   words split into pieces: " + "; ".join(f"{word!r} -> {' + '.join(pieces)}"
                                                            for word, pieces in journey.word_splits))
    else:
        lines.append("   no word was split: each word is a whole entry of the vocabulary")
    return lines


def _embeddings(journey: Journey) -> list[str]:
    e = journey.embeddings
    return [_stage("2.", "Embeddings: word + position + segment, then LayerNorm (L2 norm per token)", "embeddings"),
            *_table(journey, ["word", "position", "segment", "sum", "after norm"],
                    [e.word, e.position, e.segment, e.total, e.normed])]


def _layer(journey: Journey, index: int, layer: LayerJourney, top_n: int) -> list[str]:
    number = f"{index + 3}."
    tokens = journey.tokens
    b, h, t, dh = layer.qkv_shape
    lines = [f"\n{number} Layer {index + 1} of {len(journey.layers)}",
             f"   Q, K, V: (B, H, T, Dh) = ({b}, {h}, {t}, {dh}) each   [{computed_by('qkv')}]",
             f"   attention entropy per head, bits (0 = all on one token, {uniform_entropy(t):.2f} = spread evenly "
             f"over {t})   [{computed_by('attention')}]",
             "     " + "  ".join(f"h{i + 1} {value:.2f}" for i, value in enumerate(layer.entropy))]
    lines.append(f"   each token attends most to (probability averaged over the {h} heads):")
    width = max(6, min(16, max(len(x) for x in tokens)))
    for i, row in enumerate(layer.top_attended):
        lines.append(f"     {i:>3}  {tokens[i][:width]:<{width}}  ->  "
                     + "  ".join(f"{j}:{tokens[j]} {p:.2f}" for j, p in row[:top_n]))
    lines.append(f"   residuals and post-LN norms (L2 per token)   [{computed_by('residual')}]")
    lines += _table(journey, ["x+attention", "attention_norm", "x+ffn", "ffn_norm"],
                    [layer.attention_residual_norm, layer.attention_normed_norm, layer.ffn_residual_norm,
                     layer.output_norm])
    f = layer.feed_forward
    if f is None:
        lines.append(f"   feed-forward: not computed (ffn.output did not run)   [{computed_by('feed_forward')}]")
        return lines
    lines.append(f"   feed-forward {journey.config.hidden_act} output, {f.units} units x {t} tokens: "
                 f"mean {f.mean:.3f}, std {f.std:.3f}, {100 * f.share_positive:.0f}% > 0, "
                 f"max {f.max:.2f} at {f.max_token}:{tokens[f.max_token]}   [{computed_by('feed_forward')}]")
    return lines


def heads_lines(journey: Journey) -> list[str]:
    """What each head says, and which heads the checkpoint lacks (also the HTML explorer's summary)."""
    r, tokens = journey.heads, journey.tokens
    lines = []
    if r.pooled_norm is not None:
        lines.append(f"   pooler tanh(dense(h[CLS])): L2 norm {r.pooled_norm:.2f}   [{r.computed_by['pooler']}]")
    if r.mlm is not None:
        top_k = len(r.mlm[0][1]) if r.mlm else 0
        lines.append(f"   masked LM, top {top_k} at each [MASK]   [{r.computed_by['mlm']}]")
        if not r.mlm:
            lines.append("     (no [MASK] in the text: put one in to see what the model predicts there)")
        for position, top in r.mlm:
            lines.append(f"     {position}:[MASK]  " + "  ".join(f"{token} {p:.3f}" for token, p in top))
    if r.nsp_is_next is not None:
        note = "" if journey.pair is not None else " (no --pair given: there is no sentence B)"
        lines.append(f"   next sentence: P(B follows A) = {r.nsp_is_next:.3f}{note}   [{r.computed_by['nsp']}]")
    if r.classes is not None:
        lines.append("   classifier: " + "  ".join(f"{label} {p:.3f}" for label, p in r.classes)
                     + f"   [{r.computed_by['classifier']}]")
    if r.score is not None:
        lines.append(f"   regression score: {r.score:.4f}   [{r.computed_by['classifier']}]")
    if r.token_labels is not None:
        lines.append(f"   token labels   [{r.computed_by['classifier']}]")
        lines.append("     " + "  ".join(f"{tokens[i]}/{label} {p:.2f}" for i, (label, p) in enumerate(r.token_labels)))
    if r.answer is not None:
        start, end, p = r.answer
        lines.append(f"   answer span: tokens {start}-{end} {' '.join(tokens[start:end + 1])!r} (p {p:.3f})   "
                     f"[{r.computed_by['qa']}]")
    for note in r.absent:
        lines.append(f"   {note}")
    return lines


def render_text(journey: Journey, top_n: int = 3) -> str:
    lines = _header(journey) + _wordpiece(journey) + _embeddings(journey)
    for index, layer in enumerate(journey.layers):
        lines += _layer(journey, index, layer, top_n)
    lines += [f"\n{len(journey.layers) + 3}. Pooler and heads", *heads_lines(journey)]
    return "\n".join(lines) + "\n"
