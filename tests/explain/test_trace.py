"""The trace holds the model's own numbers: equal to `output_hidden_states` / `output_attentions`, each captured
tensor consistent with the module that made it, and on the real all-MiniLM-L6-v2 equal to transformers. The code
locations explain prints resolve to the functions that compute each stage."""

from __future__ import annotations

import importlib
import re
import types

import pytest
import torch

from minibert import model as M
from minibert.explain.journey import explain
from minibert.explain.trace import COMPUTED_BY, code_location, run_trace

CLASSES = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForNextSentencePrediction",
           "BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering"]
TEXT, PAIR = "the capital of france is [MASK].", "paris is a city."


def resolve_location(location: str):
    """'model.py: Embeddings.forward' -> the object it names, imported the way a reader would find it."""
    match = re.fullmatch(r"([\w/]+)\.py: ([\w.]+)", location)
    assert match, f"{location!r} is not 'file.py: Name.attr'"
    obj = importlib.import_module("minibert." + match.group(1).replace("/", "."))
    for part in match.group(2).split("."):
        obj = getattr(obj, part)
    return obj


def encode(loaded, text=TEXT, pair=PAIR):
    batch = loaded.tokenizer([text], [pair])
    return batch["input_ids"], batch["token_type_ids"]


@pytest.mark.parametrize("class_name", CLASSES)
def test_trace_equals_the_models_hidden_states_and_attentions(class_name, seeded_model):
    loaded = seeded_model(class_name)
    input_ids, token_type_ids = encode(loaded)
    trace = run_trace(loaded.model, input_ids, token_type_ids)
    with torch.inference_mode():
        out = loaded.model(input_ids, torch.ones_like(input_ids), token_type_ids, output_hidden_states=True,
                           output_attentions=True)
    hidden = [trace.embeddings] + [layer.output for layer in trace.layers]
    assert len(hidden) == len(out.hidden_states), "one hidden state per layer, plus the embeddings"
    for i, (ours, theirs) in enumerate(zip(hidden, out.hidden_states)):
        assert torch.equal(ours, theirs[0]), f"hidden state {i} differs from output_hidden_states"
    for i, (layer, theirs) in enumerate(zip(trace.layers, out.attentions)):
        assert torch.equal(layer.attention, theirs[0]), f"layer {i + 1} attention differs from output_attentions"


def test_each_captured_tensor_is_what_its_module_computes(seeded_model):
    """Recompute every stage from the previous captured value with the model's own modules: a hook on the wrong
    module, or on its input instead of its output, breaks one of these."""
    loaded = seeded_model("BertForPreTraining")
    model, encoder = loaded.model, loaded.model.bert
    input_ids, token_type_ids = encode(loaded)
    trace = run_trace(model, input_ids, token_type_ids)
    emb = encoder.embeddings
    with torch.inference_mode():
        assert torch.equal(trace.word, emb.word_embeddings(input_ids[0])), "word embeddings"
        assert torch.equal(trace.segment, emb.token_type_embeddings(token_type_ids[0])), "segment embeddings"
        assert torch.equal(trace.position, emb.position_embeddings(trace.position_ids)), "position embeddings"
        torch.testing.assert_close(trace.embedding_sum, trace.word + trace.position + trace.segment,
                                   msg="the sum before LayerNorm")
        assert torch.equal(emb.norm(trace.embedding_sum), trace.embeddings), "embeddings after LayerNorm"
        x = trace.embeddings
        for i, (layer, module) in enumerate(zip(trace.layers, encoder.layers)):
            heads, tokens, head_size = layer.query.shape
            q = module.attention.query(x).view(tokens, heads, head_size).transpose(0, 1)  # (T, D) -> (H, T, Dh)
            assert torch.equal(layer.query, q), f"layer {i + 1}: Q"
            probs = (layer.query @ layer.key.transpose(-1, -2) * head_size ** -0.5).softmax(-1)
            torch.testing.assert_close(layer.attention, probs, msg=f"layer {i + 1}: softmax(QK^T/sqrt(Dh))")
            context = (layer.attention @ layer.value).transpose(0, 1).reshape(tokens, -1)  # (H, T, Dh) -> (T, D)
            torch.testing.assert_close(layer.attention_residual, x + module.attention.output(context),
                                       msg=f"layer {i + 1}: x + attention")
            assert torch.equal(module.attention_norm(layer.attention_residual), layer.attention_normed)
            torch.testing.assert_close(layer.ffn_activation,
                                       module.ffn.activation(module.ffn.intermediate(layer.attention_normed)),
                                       msg=f"layer {i + 1}: feed-forward activation")
            torch.testing.assert_close(layer.ffn_residual,
                                       layer.attention_normed + module.ffn.output(layer.ffn_activation),
                                       msg=f"layer {i + 1}: x + feed-forward")
            assert torch.equal(module.ffn_norm(layer.ffn_residual), layer.output), f"layer {i + 1}: ffn_norm"
            x = layer.output
        assert torch.equal(trace.pooled, encoder.pooler(x[None])[0]), "pooler output"


def test_minilm_trace_matches_transformers(minilm_dir, minilm):
    """The real checkpoint: explain's hidden states and attentions against transformers (eager) to 1e-5."""
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertModel.from_pretrained(str(minilm_dir), attn_implementation="eager").eval()
    input_ids, token_type_ids = encode(minilm, "tokenization makes the capital of france visible.", PAIR)
    journey = explain(minilm, "tokenization makes the capital of france visible.", PAIR)
    trace = journey.trace
    assert torch.equal(trace.input_ids, input_ids[0]), "explain should encode the text as the tokenizer does"
    with torch.inference_mode():
        out = theirs(input_ids=input_ids, token_type_ids=token_type_ids, output_hidden_states=True,
                     output_attentions=True)
    hidden = [trace.embeddings] + [layer.output for layer in trace.layers]
    for i, (ours, reference) in enumerate(zip(hidden, out.hidden_states, strict=True)):
        diff = (ours - reference[0]).abs().max().item()
        assert diff <= 1e-5, f"hidden state {i}: max |diff| {diff:.2e} against transformers"
    for i, (layer, reference) in enumerate(zip(trace.layers, out.attentions, strict=True)):
        diff = (layer.attention - reference[0]).abs().max().item()
        assert diff <= 1e-5, f"layer {i + 1} attention: max |diff| {diff:.2e} against transformers"
        # The summaries printed from them agree with the same summaries computed from transformers' numbers.
        p = reference[0].double()
        entropy = (-(p * torch.log2(p.clamp_min(1e-30))).sum(-1)).mean(-1)
        assert journey.layers[i].entropy == pytest.approx(entropy.tolist(), abs=1e-4), f"layer {i + 1} entropy"
        norms = out.hidden_states[i + 1][0].norm(dim=-1)
        assert journey.layers[i].output_norm == pytest.approx(norms.tolist(), abs=1e-4), f"layer {i + 1} norms"
    pooled = (trace.pooled - out.pooler_output[0]).abs().max().item()
    assert pooled <= 1e-5, f"pooler output: max |diff| {pooled:.2e}"


def test_code_locations_name_the_functions_that_compute_each_stage():
    assert code_location(M.Embeddings.forward) == "model.py: Embeddings.forward"
    for stage, function in COMPUTED_BY.items():
        location = code_location(function)
        assert resolve_location(location) is function, f"{stage}: {location!r} does not lead back to the function"


def test_code_location_is_derived_from_the_code_object():
    """Not typed in: a function renamed in model.py would print its new name, and a stale name fails to import."""
    original = M.Embeddings.forward
    renamed = types.FunctionType(original.__code__, original.__globals__, "embed")
    renamed.__qualname__ = "Embeddings.embed"
    assert code_location(renamed) == "model.py: Embeddings.embed", "the location should follow the qualified name"
    with pytest.raises(AttributeError):
        resolve_location(code_location(renamed))  # what the reading-guide and output tests do with every name

    def outside(self):
        return self
    with pytest.raises(ValueError):
        code_location(outside)  # not in the minibert package: there is no honest location to print


def test_masking_a_head_equals_zeroing_its_values(seeded_model):
    """Silencing head (layer 1, head 2) through explain's hook must equal an independent construction: the same
    model with that head's value projection zeroed (its probabilities then weigh zero vectors). It must change the
    MLM logits, and leave the head's attention probabilities as they were."""
    loaded = seeded_model("BertForMaskedLM")
    model = loaded.model
    input_ids, token_type_ids = encode(loaded)
    layer, head, size = 1, 2, model.config.head_size
    masked = run_trace(model, input_ids, token_type_ids, mask_heads=[(layer, head)])
    plain = run_trace(model, input_ids, token_type_ids)

    zeroed = type(model)(model.config)
    zeroed.load_state_dict(model.state_dict())
    with torch.no_grad():
        value = zeroed.bert.layers[layer].attention.value
        value.weight[head * size:(head + 1) * size] = 0
        value.bias[head * size:(head + 1) * size] = 0
        expected = zeroed.eval()(input_ids, torch.ones_like(input_ids), token_type_ids).logits
    torch.testing.assert_close(masked.output.logits, expected, msg="masking differs from a zeroed value projection")
    assert not torch.allclose(masked.output.logits, plain.output.logits), "masking a head should change the logits"
    assert torch.equal(masked.layers[layer].attention, plain.layers[layer].attention), \
        "the masked head's own probabilities are unchanged"
    with torch.inference_mode():
        after = model(input_ids, torch.ones_like(input_ids), token_type_ids).logits
    # (without output_attentions the SDPA path runs: equal to float rounding, not bit for bit)
    torch.testing.assert_close(after, plain.output.logits, msg="the mask must be removed after the run")
