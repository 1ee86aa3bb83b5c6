"""Parity with Hugging Face transformers for every head class: outputs, losses, hidden states, attentions and
gradients, on both minibert attention paths and with unpadding on and off, in float32 and float64.

Each test builds a seeded random `transformers` model (eager attention), saves it, loads it with minibert's
`from_pretrained`, and compares over real (unpadded) tokens only (DESIGN.md: padded query outputs mean nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import transformers

from minibert import model as mb
from minibert.checkpoint import hf_name

FLOAT32_TOL = 1e-5
FLOAT64_TOL = 1e-10
GRAD_REL_TOL = 1e-5

# Measured max differences, printed at the end of the module with `pytest -s` (the report quotes them).
MEASURED: dict[str, float] = {}


def record(key: str, value: float) -> None:
    MEASURED[key] = max(MEASURED.get(key, 0.0), value)


# -- labels ----------------------------------------------------------------------------------------------------
def mlm_labels(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(batch["input_ids"].shape, generator=g) < 0.35) & batch["attention_mask"].bool()
    chosen[:, 1] = True  # at least one masked position per row (position 1 is real in every test batch)
    return torch.where(chosen, batch["input_ids"], torch.full_like(batch["input_ids"], -100))


def nsp_labels(batch):
    return torch.arange(batch["input_ids"].shape[0]) % 2


def class_labels(batch, num_labels=3):
    return torch.arange(batch["input_ids"].shape[0]) % num_labels


def regression_labels(batch):
    return torch.linspace(-1.5, 2.0, batch["input_ids"].shape[0])


def token_labels(batch, num_labels=5):
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, num_labels, batch["input_ids"].shape, generator=g)
    return labels.masked_fill(~batch["attention_mask"].bool(), -100)


def qa_labels(batch):
    lengths = batch["attention_mask"].sum(1)
    start = (lengths // 3).clone()
    end = (lengths - 2).clamp(min=0)
    end[0] = batch["input_ids"].shape[1] + 4  # outside the window: clamped and ignored by both
    return {"start_positions": start, "end_positions": end}


# -- the head classes --------------------------------------------------------------------------------------------
@dataclass
class Head:
    name: str
    minibert: type
    hf: type
    outputs: list[tuple[str, str, str]]  # (minibert field, transformers field, "token" | "sequence")
    labels: Callable[[dict], dict] | None = None
    config: dict = field(default_factory=dict)


HEADS = [
    Head("BertModel", mb.BertModel, transformers.BertModel,
         [("last_hidden_state", "last_hidden_state", "token"), ("pooler_output", "pooler_output", "sequence")]),
    Head("BertForPreTraining", mb.BertForPreTraining, transformers.BertForPreTraining,
         [("prediction_logits", "prediction_logits", "token"),
          ("seq_relationship_logits", "seq_relationship_logits", "sequence")],
         lambda b: {"labels": mlm_labels(b), "next_sentence_label": nsp_labels(b)}),
    Head("BertForMaskedLM", mb.BertForMaskedLM, transformers.BertForMaskedLM,
         [("logits", "logits", "token")], lambda b: {"labels": mlm_labels(b)}),
    Head("BertForNextSentencePrediction", mb.BertForNextSentencePrediction,
         transformers.BertForNextSentencePrediction, [("logits", "logits", "sequence")],
         lambda b: {"labels": nsp_labels(b)}),
    Head("BertForSequenceClassification", mb.BertForSequenceClassification,
         transformers.BertForSequenceClassification, [("logits", "logits", "sequence")],
         lambda b: {"labels": class_labels(b)}, {"num_labels": 3}),
    Head("BertForSequenceClassification-regression", mb.BertForSequenceClassification,
         transformers.BertForSequenceClassification, [("logits", "logits", "sequence")],
         lambda b: {"labels": regression_labels(b)}, {"num_labels": 1}),
    Head("BertForTokenClassification", mb.BertForTokenClassification, transformers.BertForTokenClassification,
         [("logits", "logits", "token")], lambda b: {"labels": token_labels(b)}, {"num_labels": 5}),
    Head("BertForQuestionAnswering", mb.BertForQuestionAnswering, transformers.BertForQuestionAnswering,
         [("start_logits", "start_logits", "token"), ("end_logits", "end_logits", "token")], qa_labels),
]
HEAD_IDS = [h.name for h in HEADS]
HEADS_BY_NAME = {h.name: h for h in HEADS}
CONFIGS = ["h36x3", "h30x2", "pos512"]
SEEDS = {name: i for i, name in enumerate(CONFIGS)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, make_config, hf_config, randomize):
    """(head name, config name, dropout zero?) -> folder holding a saved, seeded random transformers model.
    Built once per module and reused by every path/unpad/dtype variant."""
    cache: dict[tuple, object] = {}

    def get(head: Head, config_name: str, no_dropout: bool = False):
        key = (head.name, config_name, no_dropout)
        if key not in cache:
            config = make_config(config_name, **head.config)
            overrides = {"classifier_dropout": 0.0, "hidden_dropout_prob": 0.0,
                         "attention_probs_dropout_prob": 0.0} if no_dropout else {}
            torch.manual_seed(SEEDS[config_name])
            reference = head.hf(hf_config(config, "eager", **overrides))
            randomize(reference, seed=100 + SEEDS[config_name])
            folder = tmp_path_factory.mktemp(f"{head.name}-{config_name}")
            reference.save_pretrained(folder)
            cache[key] = (folder, reference.eval())
        return cache[key]

    return get


@pytest.fixture(scope="module")
def batch_for(make_config, make_batch):
    """config name -> the padded batch (singles and pairs) used with that config."""
    return lambda config_name: make_batch(make_config(config_name), seed=SEEDS[config_name])


def compare_outputs(head: Head, ours, theirs, batch, what: str, max_diff_real) -> float:
    worst = 0.0
    for ours_field, theirs_field, kind in head.outputs:
        a, b = getattr(ours, ours_field), getattr(theirs, theirs_field)
        assert a is not None, f"{what}: minibert returned no {ours_field}"
        assert a.shape == b.shape, f"{what}: {ours_field} has shape {tuple(a.shape)}, transformers {tuple(b.shape)}"
        diff = max_diff_real(a, b, batch["attention_mask"]) if kind == "token" else (a - b).abs().max().item()
        worst = max(worst, diff)
    return worst


# -- float32 and float64 outputs and losses ------------------------------------------------------------------
@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("head_name", HEAD_IDS)
def test_outputs_and_losses_match_transformers(checkpoints, batch_for, diff_real, head_name, config_name):
    """Every output, the loss and every hidden state, over real tokens: float32 within 1e-5 and float64 within
    1e-10, for both attention paths and unpad on and off."""
    head = HEADS_BY_NAME[head_name]
    folder, reference = checkpoints(head, config_name)
    batch = batch_for(config_name)
    labels = head.labels(batch) if head.labels else {}
    references = {torch.float32: reference,
                  torch.float64: head.hf.from_pretrained(folder, attn_implementation="eager").eval().double()}
    for dtype, tolerance in ((torch.float32, FLOAT32_TOL), (torch.float64, FLOAT64_TOL)):
        precision = "f32" if dtype == torch.float32 else "f64"
        with torch.no_grad():
            theirs = references[dtype](**batch, **labels, output_hidden_states=True)
        for attn in ("eager", "sdpa"):
            for unpad in (True, False):
                what = f"{head.name}/{config_name}/{attn}/unpad={unpad}/{precision}"
                ours_model = head.minibert.from_pretrained(folder, attn_implementation=attn, unpad=unpad).to(dtype)
                with torch.no_grad():
                    ours = ours_model(**batch, **labels, output_hidden_states=True)
                diff = compare_outputs(head, ours, theirs, batch, what, diff_real)
                record(f"{precision} {attn} {head.name}", diff)
                assert diff <= tolerance, f"{what}: outputs differ from transformers by {diff:.3g} > {tolerance}"
                if labels:
                    assert ours.loss is not None, f"{what}: minibert returned no loss although labels were given"
                    loss_diff = abs(ours.loss.item() - theirs.loss.item())
                    record(f"{precision} loss {head.name}", loss_diff)
                    assert loss_diff <= tolerance * max(1.0, abs(theirs.loss.item())), (
                        f"{what}: loss {ours.loss.item():.10g} vs transformers {theirs.loss.item():.10g}")
                layers = ours_model.config.num_hidden_layers
                assert len(ours.hidden_states) == len(theirs.hidden_states) == layers + 1, (
                    f"{what}: {len(ours.hidden_states)} hidden states, transformers {len(theirs.hidden_states)}")
                for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
                    d = diff_real(a, b, batch["attention_mask"])
                    assert d <= tolerance, f"{what}: hidden state {i} differs by {d:.3g} > {tolerance}"


@pytest.mark.parametrize("head_name", HEAD_IDS)
def test_transformers_checkpoints_load_cleanly(checkpoints, head_name):
    head = HEADS_BY_NAME[head_name]
    folder, reference = checkpoints(head, "h36x3")
    report = head.minibert.from_pretrained(folder).load_report
    assert report.newly_initialised == [] and report.unused == [], f"{head.name}: {report.summary()}"
    assert report.loaded == len(reference.state_dict()) - (2 if "cls.predictions.decoder.weight" in
                                                            reference.state_dict() else 0), (
        f"{head.name}: loaded {report.loaded} tensors, transformers holds {len(reference.state_dict())}")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("config_name", CONFIGS)
def test_attentions_match_transformers(checkpoints, batch_for, config_name, attn):
    head = HEADS_BY_NAME["BertModel"]
    folder, reference = checkpoints(head, config_name)
    batch = batch_for(config_name)
    real_queries = batch["attention_mask"].bool()  # (B, T)
    for unpad in (True, False):
        ours_model = head.minibert.from_pretrained(folder, attn_implementation=attn, unpad=unpad)
        with torch.no_grad():
            ours = ours_model(**batch, output_attentions=True)
            theirs = reference(**batch, output_attentions=True)
        assert ours.attentions is not None and len(ours.attentions) == len(theirs.attentions), (
            f"{attn}/unpad={unpad}: minibert returned {ours.attentions and len(ours.attentions)} attention maps, "
            f"transformers {len(theirs.attentions)}")
        for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
            assert a.shape == b.shape, f"layer {i}: attention shape {tuple(a.shape)} vs {tuple(b.shape)}"
            rows = real_queries[:, None, :, None].expand_as(a)  # (B, H, T, T): real query rows, every key
            d = (a[rows] - b[rows]).abs().max().item()
            record(f"f32 attentions {attn}", d)
            assert d <= FLOAT32_TOL, f"{config_name}/{attn}/unpad={unpad}: layer {i} attention probs differ by {d:.3g}"
            padded_keys = ~batch["attention_mask"].bool()[:, None, None, :].expand_as(a) & rows
            assert a[padded_keys].abs().max().item() < 1e-12, f"layer {i}: padded keys get attention probability"


# -- masked_only MLM ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head_name", ["BertForPreTraining", "BertForMaskedLM"])
@pytest.mark.parametrize("unpad", [True, False])
def test_masked_only_matches_full_logits(checkpoints, batch_for, head_name, unpad):
    head = HEADS_BY_NAME[head_name]
    folder, _ = checkpoints(head, "h36x3")
    batch = batch_for("h36x3")
    labels = head.labels(batch)
    model = head.minibert.from_pretrained(folder, unpad=unpad)
    with torch.no_grad():
        full = model(**batch, **labels)
        masked = model(**batch, **labels, masked_only=True)
    full_logits = full.prediction_logits if head_name == "BertForPreTraining" else full.logits
    where = labels["labels"] != -100  # (B, T)
    assert masked.masked_logits is not None, "masked_only=True returned no masked_logits"
    assert masked.masked_logits.shape == (int(where.sum()), model.config.vocab_size), (
        f"masked_logits has shape {tuple(masked.masked_logits.shape)}, expected ({int(where.sum())}, V)")
    d = (masked.masked_logits - full_logits[where]).abs().max().item()
    assert d <= 1e-6, f"masked_logits differ from the full logits at masked rows by {d:.3g}"
    assert abs(masked.loss.item() - full.loss.item()) <= 1e-6, (
        f"masked_only loss {masked.loss.item()} differs from full loss {full.loss.item()}")
    if head_name == "BertForPreTraining":
        assert masked.prediction_logits is None, "masked_only should not compute the full (B, T, V) logits"


# -- gradients ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unpad", [True, False])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("head_name", [h for h in HEAD_IDS if h != "BertModel"])
def test_gradients_match_transformers(checkpoints, batch_for, head_name, attn, unpad):
    head = HEADS_BY_NAME[head_name]
    folder, reference = checkpoints(head, "h36x3", no_dropout=True)
    batch = batch_for("h36x3")
    labels = head.labels(batch)
    ours_model = head.minibert.from_pretrained(folder, attn_implementation=attn, unpad=unpad).train()
    reference.train().zero_grad(set_to_none=True)
    ours_model(**batch, **labels).loss.backward()
    reference(**batch, **labels).loss.backward()
    reference.eval()
    checked = 0
    model_scale = max(p.grad.abs().max().item() for p in reference.parameters() if p.grad is not None)
    for name, param in ours_model.named_parameters():
        theirs = reference.get_parameter(hf_name(name))
        assert param.grad is not None, f"{head.name}: minibert {name} got no gradient"
        assert theirs.grad is not None, f"{head.name}: transformers {hf_name(name)} got no gradient"
        scale = theirs.grad.abs().max().item()
        if scale <= 1e-6 * model_scale:
            # An exact zero up to rounding: the key bias (it shifts a query's scores equally, which softmax
            # ignores) and, for QA's softmax over positions, any bias that shifts every position's logit equally.
            # Both sides hold only noise (~1e-8 of the largest gradient), which a relative check cannot compare.
            assert param.grad.abs().max().item() <= 1e-6 * model_scale, (
                f"{head.name}/{attn}/unpad={unpad}: {name} should have a zero gradient as in transformers, got "
                f"{param.grad.abs().max().item():.3g}")
            checked += 1
            continue
        rel = (param.grad - theirs.grad).abs().max().item() / scale
        record(f"grad rel {head.name}", rel)
        assert rel <= GRAD_REL_TOL, (f"{head.name}/{attn}/unpad={unpad}: gradient of {name} ({hf_name(name)}) "
                                     f"differs by {rel:.3g} relative")
        checked += 1
    assert checked == len(list(reference.parameters())), (
        f"{head.name}: compared {checked} gradients, transformers has {len(list(reference.parameters()))} parameters")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_qa_loss_does_not_depend_on_unpad(checkpoints, batch_for, attn):
    """The QA loss is a softmax over all T positions, padded ones included (transformers does the same), so it
    reads the logits at padded positions. model.py promises that `unpad` never changes a result beyond rounding:
    the loss with unpad=True must equal the loss with unpad=False (which matches transformers, checked above)."""
    head = HEADS_BY_NAME["BertForQuestionAnswering"]
    folder, reference = checkpoints(head, "h36x3")
    batch = batch_for("h36x3")
    labels = head.labels(batch)
    with torch.no_grad():
        theirs = reference(**batch, **labels).loss.item()
        losses = {unpad: head.minibert.from_pretrained(folder, attn_implementation=attn, unpad=unpad)(
            **batch, **labels).loss.item() for unpad in (True, False)}
    assert abs(losses[True] - losses[False]) <= FLOAT32_TOL * max(1.0, theirs), (
        f"QA loss depends on unpad: {losses[True]:.8g} (unpad=True) vs {losses[False]:.8g} (unpad=False, = "
        f"transformers {theirs:.8g}); padded start/end logits are bias-only when unpadded")


def test_zz_print_measured_diffs():
    """Prints the measured maxima (run with -s); runs last in this module."""
    for key in sorted(MEASURED):
        print(f"{key:60s} {MEASURED[key]:.3g}")
