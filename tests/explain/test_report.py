"""What explain prints, on the real all-MiniLM-L6-v2 (no heads), on a tiny model `minibert pretrain` wrote (masked-LM
and NSP heads), on a classifier fine-tuned from it, and on seeded tagger and QA models: every stage is there, each
names a function that exists, the printed numbers are the journey's, and each head's reading agrees with the model
run on its own (or with minibert's other inference paths)."""

from __future__ import annotations

import re

import pytest
import torch

from minibert.explain.journey import explain
from minibert.explain.loading import load_for_explain
from minibert.explain.report import render_text
from minibert.inference import fill_mask
from minibert.finetuning.predict import Predictor

from .test_trace import resolve_location

QUESTION = "the capital of france is [MASK]."


def stage_titles(text: str) -> list[str]:
    return re.findall(r"^\d+\. (.+?)(?:   \[|$)", text, flags=re.MULTILINE)


def test_minilm_journey_has_every_stage_and_says_it_has_no_mlm_head(minilm):
    journey = explain(minilm, "tokenization of the capital of france is [MASK].", "paris is lovely.")
    text = render_text(journey)
    titles = stage_titles(text)
    assert titles[:2] == ["WordPiece: pieces, ids, segments, positions",
                          "Embeddings: word + position + segment, then LayerNorm (L2 norm per token)"], titles
    assert titles[2:8] == [f"Layer {i} of 6" for i in range(1, 7)] and titles[8] == "Pooler and heads", titles
    assert "'tokenization' -> token + ##ization" in text, "a word WordPiece splits should be shown split"
    assert "no masked-LM head" in text and "no [MASK] predictions" in text, "MiniLM has no MLM head: say so"
    assert "pooler tanh(dense(h[CLS])): L2 norm" in text, "MiniLM's pooler should be shown"
    assert journey.heads.mlm is None and journey.heads.nsp_is_next is None
    first_sep = journey.tokens.index("[SEP]")
    assert [p.segment for p in journey.pieces] == [0] * (first_sep + 1) + [1] * (len(journey.tokens) - first_sep - 1), \
        "sentence B (segment 1) starts after the first [SEP]"
    assert len(journey.tokens) == 17 and "(B, H, T, Dh) = (1, 12, 17, 32)" in text, "Q/K/V: 12 heads of 32, 17 tokens"


def test_every_named_function_exists(minilm, pretrained_dir, classifier_dir):
    """Every `[file.py: Name.attr]` explain prints imports back to a function or class of minibert."""
    locations = set()
    for loaded in (minilm, load_for_explain(pretrained_dir), load_for_explain(classifier_dir)):
        text = render_text(explain(loaded, QUESTION, "paris is a city."))
        locations |= set(re.findall(r"\[([\w/]+\.py: [\w.]+)\]", text))
    expected = {"tokenizer.py: BertTokenizer.__call__", "model.py: Embeddings.forward",
                "model.py: SelfAttention.forward", "model.py: attention", "model.py: EncoderLayer.forward",
                "model.py: FeedForward.forward", "model.py: Pooler.forward", "model.py: MaskedLMHead.forward",
                "model.py: BertForPreTraining.forward", "model.py: BertForSequenceClassification.forward"}
    assert expected <= locations, f"missing stage names: {expected - locations}"
    for location in locations:
        assert callable(resolve_location(location)), f"{location} does not name a function"


def test_printed_numbers_are_the_journeys(minilm):
    journey = explain(minilm, QUESTION)
    lines = render_text(journey).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("2. Embeddings")) + 2
    for i, line in enumerate(lines[start:start + len(journey.tokens)]):
        printed = [float(x) for x in line.split()[2:]]
        e = journey.embeddings
        expected = [e.word[i], e.position[i], e.segment[i], e.total[i], e.normed[i]]
        assert printed == pytest.approx(expected, abs=0.006), f"embedding norms of token {i}: {line}"
    norms = journey.trace.embeddings.norm(dim=-1)  # straight from the hidden state, not through the journey
    assert e.normed == pytest.approx(norms.tolist(), abs=1e-5)
    entropy_line = next(line for line in lines if line.strip().startswith("h1 "))
    printed = [float(x) for x in entropy_line.split()[1::2]]
    assert printed == pytest.approx(journey.layers[0].entropy, abs=0.006), "layer 1 entropies as printed"


def test_pretrained_model_shows_mlm_and_nsp(pretrained_dir):
    loaded = load_for_explain(pretrained_dir)
    assert type(loaded.model).__name__ == "BertForPreTraining", "minibert pretrain writes MLM + NSP heads"
    journey = explain(loaded, QUESTION, "paris is a city.", top_k=4)
    mask_position = journey.tokens.index("[MASK]")
    [(position, top)] = journey.heads.mlm
    assert position == mask_position, "one prediction list, at the [MASK]"
    batch = loaded.tokenizer([QUESTION], ["paris is a city."])
    with torch.inference_mode():
        out = loaded.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    probs = out.prediction_logits[0, mask_position].softmax(-1)
    assert [p for _, p in top] == pytest.approx(probs.topk(4).values.tolist(), abs=1e-6), "MLM top-k probabilities"
    assert [t for t, _ in top] == loaded.tokenizer.convert_ids_to_tokens(probs.topk(4).indices.tolist())
    nsp = out.seq_relationship_logits[0].softmax(-1)[0].item()
    assert journey.heads.nsp_is_next == pytest.approx(nsp, abs=1e-6), "P(B follows A) is NSP label 0"
    text = render_text(journey)
    assert f"{mask_position}:[MASK]  {top[0][0]} {top[0][1]:.3f}" in text, text
    assert f"next sentence: P(B follows A) = {nsp:.3f}" in text
    assert "no masked-LM head" not in text and "no next-sentence head" not in text
    # Without a pair, fill_mask (minibert.inference) reaches the same predictions through its own code path.
    [expected] = fill_mask(loaded.model, QUESTION, tokenizer=loaded.tokenizer, top_k=4)
    [(_, single)] = explain(loaded, QUESTION, top_k=4).heads.mlm
    assert [t for t, _ in single] == [t for t, _ in expected], "explain and fill-mask should agree on the tokens"
    assert [p for _, p in single] == pytest.approx([p for _, p in expected], abs=1e-6)


def test_masking_a_head_changes_the_mlm_prediction(pretrained_dir):
    """The reading guide's experiment: silence one head and watch the [MASK] probabilities move."""
    loaded = load_for_explain(pretrained_dir)
    plain = explain(loaded, QUESTION).heads.mlm[0][1]
    masked = explain(loaded, QUESTION, mask_heads=[(1, 0)])
    assert "masked heads (output zeroed before attention.output): layer 2 head 1" in render_text(masked)
    assert [p for _, p in masked.heads.mlm[0][1]] != pytest.approx([p for _, p in plain], abs=1e-6), \
        "silencing a head in the last layer should change the [MASK] probabilities"


def test_finetuned_classifier_shows_label_names_and_probabilities(classifier_dir):
    loaded = load_for_explain(classifier_dir)
    journey = explain(loaded, "the film was great")
    classes = dict(journey.heads.classes)
    assert set(classes) == {"negative", "positive"}, f"label names from the fine-tuned folder: {classes}"
    [predicted] = Predictor.load(classifier_dir, device="cpu").predict([{"text": "the film was great"}])
    assert classes == pytest.approx(predicted["probabilities"], abs=1e-5), "the same probabilities as predict"
    text = render_text(journey)
    assert re.search(r"classifier: negative 0\.\d{3}  positive 0\.\d{3}", text), text
    assert "no masked-LM head" in text, "a fine-tuned classifier no longer carries the MLM head"


@pytest.mark.parametrize("class_name", ["BertForTokenClassification", "BertForQuestionAnswering"])
def test_tagger_and_qa_heads_are_read(class_name, seeded_model):
    loaded = seeded_model(class_name)
    journey = explain(loaded, "paris is the capital of france.", "the capital of france is paris.")
    text = render_text(journey)
    if class_name == "BertForTokenClassification":
        assert len(journey.heads.token_labels) == len(journey.tokens), "a label per token"
        assert "token labels   [model.py: BertForTokenClassification.forward]" in text
    else:
        start, end, p = journey.heads.answer
        assert 0 <= start <= end < len(journey.tokens) and 0 < p <= 1, journey.heads.answer
        assert "answer span: tokens" in text
    assert "no pooler (" in text, f"{class_name} has no pooler; say so"


def test_a_learners_edit_that_skips_a_module_is_shown_not_fatal(seeded_model, monkeypatch):
    """The reading guide asks learners to edit model.py; if an edit stops a module from running (here: no position
    embeddings), explain says so instead of failing, and the hidden states are still the model's."""
    from minibert import model as M

    def without_positions(self, input_ids, token_type_ids, position_ids):
        return self.dropout(self.norm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)))
    monkeypatch.setattr(M.Embeddings, "forward", without_positions)
    journey = explain(seeded_model("BertModel"), "paris is a city.")
    assert all(value != value for value in journey.embeddings.position), "position norms should be NaN"
    lines = render_text(journey).splitlines()
    cls_row = lines[next(i for i, line in enumerate(lines) if line.startswith("2. Embeddings")) + 2]
    assert cls_row.split()[1] == "[CLS]" and cls_row.split()[3:5] == ["not", "computed"], cls_row
