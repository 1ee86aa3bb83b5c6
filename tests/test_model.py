"""minibert.model on its own: the two attention paths and the unpadded dense path agree, padding stays out of real
tokens, and bad inputs fail with one clear line."""

from __future__ import annotations

import pytest
import torch

from minibert import model as mb
from minibert.errors import InputError

PATH_TOL = 1e-6


def test_attention_function_paths_agree():
    """The reference softmax path and PyTorch's fused SDPA kernel, on padded keys and odd head sizes."""
    generator = torch.Generator().manual_seed(0)
    for head_size in (12, 15, 16):
        q, k, v = (torch.randn(3, 2, 9, head_size, generator=generator) for _ in range(3))  # (B, H, T, Dh)
        real = torch.ones(3, 9, dtype=torch.bool)
        real[1, 5:] = False
        real[2, 2:] = False
        mask = torch.zeros(3, 9).masked_fill(~real, torch.finfo(torch.float32).min)[:, None, None, :]
        eager, probs = mb.attention(q, k, v, mask, 0.0, "eager", return_probs=True)
        sdpa, _ = mb.attention(q, k, v, mask, 0.0, "sdpa")
        d = (eager - sdpa).abs().max().item()
        assert d <= PATH_TOL, f"head size {head_size}: eager and sdpa attention differ by {d:.3g}"
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-6), "attention probabilities do not sum to 1"
        assert probs.masked_select(~real[:, None, None, :]).abs().max() == 0, "padded keys get probability"


def _random_model(cls, config, randomize, seed=0):
    torch.manual_seed(seed)
    return randomize(cls(config), seed).eval()


def test_eager_and_sdpa_paths_agree_on_padded_batch(shape_name, make_config, make_batch, randomize, diff_real):
    config = make_config(shape_name)
    batch = make_batch(config)
    eager = _random_model(mb.BertModel, config.replace(attn_implementation="eager"), randomize)
    sdpa = mb.BertModel(config.replace(attn_implementation="sdpa")).eval()
    sdpa.load_state_dict(eager.state_dict())
    with torch.no_grad():
        a, b = eager(**batch), sdpa(**batch)
    # The two kernels sum in different orders: they differ by a few float32 ulps of the outputs (|h| ~ 4 after
    # the last LayerNorm, where one ulp is 4.8e-7), so the bound is 1e-6 relative to the output scale.
    scale = max(1.0, a.last_hidden_state.abs().max().item())
    d = diff_real(a.last_hidden_state, b.last_hidden_state, batch["attention_mask"])
    assert d <= PATH_TOL * scale, (f"{shape_name}: eager and sdpa last_hidden_state differ by {d:.3g} on real "
                                   f"tokens (scale {scale:.3g})")
    d = (a.pooler_output - b.pooler_output).abs().max().item()
    assert d <= PATH_TOL * scale, f"{shape_name}: eager and sdpa pooler_output differ by {d:.3g}"


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_unpad_on_and_off_agree_on_real_tokens(shape_name, attn, make_config, make_batch, randomize, diff_real):
    config = make_config(shape_name, attn_implementation=attn)
    batch = make_batch(config)
    unpadded = _random_model(mb.BertForTokenClassification, config.replace(unpad=True, num_labels=4), randomize)
    padded = mb.BertForTokenClassification(config.replace(unpad=False, num_labels=4)).eval()
    padded.load_state_dict(unpadded.state_dict())
    with torch.no_grad():
        a = unpadded(**batch, output_hidden_states=True)
        b = padded(**batch, output_hidden_states=True)
    d = diff_real(a.logits, b.logits, batch["attention_mask"])
    assert d <= PATH_TOL, f"{shape_name}/{attn}: unpad True and False differ by {d:.3g} on real tokens"
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        d = diff_real(x, y, batch["attention_mask"])
        assert d <= PATH_TOL, f"{shape_name}/{attn}: hidden state {i} differs by {d:.3g} between unpad True/False"
    pads = ~batch["attention_mask"].bool()
    assert a.hidden_states[-1][pads].abs().max() == 0, "unpadded path should leave zeros at padded positions"


def test_padding_does_not_change_real_outputs(make_config, randomize):
    """A sentence alone and the same sentence padded inside a batch give the same outputs."""
    config = make_config("h36x3")
    model = _random_model(mb.BertModel, config, randomize)
    ids = torch.tensor([[1, 7, 9, 11, 2]])
    alone = model(ids).last_hidden_state
    batch = torch.tensor([[1, 7, 9, 11, 2, 0, 0, 0], [1, 5, 6, 7, 8, 9, 10, 2]])
    mask = (batch != 0).long()
    for unpad in (True, False):
        model.config.unpad = unpad
        with torch.no_grad():
            padded = model(batch, attention_mask=mask).last_hidden_state
        d = (padded[0, :5] - alone[0]).abs().max().item()
        assert d <= PATH_TOL, f"unpad={unpad}: padding a sentence changes its outputs by {d:.3g}"


def test_batch_without_padding_matches_no_mask(make_config, randomize):
    config = make_config("h30x2")
    model = _random_model(mb.BertModel, config, randomize)
    ids = torch.randint(1, config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert torch.equal(a, b), "an all-ones attention_mask should give exactly the outputs of no mask"


def test_position_and_token_type_defaults(make_config, randomize):
    config = make_config("h36x3")
    model = _random_model(mb.BertModel, config, randomize)
    ids = torch.tensor([[1, 5, 6, 2]])
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(ids, token_type_ids=torch.zeros_like(ids), position_ids=torch.arange(4)[None]).last_hidden_state
        c = model(ids, token_type_ids=torch.ones_like(ids)).last_hidden_state
    assert torch.equal(a, b), "default token_type_ids/position_ids should be zeros/arange"
    assert not torch.allclose(a, c), "token_type_ids are ignored"


# -- bad inputs -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model(make_config):
    torch.manual_seed(0)
    return mb.BertModel(make_config("h36x3")).eval()  # max_position_embeddings 32, vocab 64


def _one_line_error(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message, f"error message is not one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"error message {message!r} does not mention {fragment!r}"


def test_input_longer_than_max_positions(small_model):
    with pytest.raises(InputError) as error:
        small_model(torch.ones(1, 33, dtype=torch.long))
    _one_line_error(error, "33", "max_position_embeddings", "32")


def test_token_id_outside_vocabulary(small_model):
    ids = torch.tensor([[1, 5, 64, 2]])
    with pytest.raises(InputError) as error:
        small_model(ids)
    _one_line_error(error, "input_ids", "64", "[0, 64)")
    with pytest.raises(InputError) as error:
        small_model(torch.tensor([[1, -1, 2]]))
    _one_line_error(error, "input_ids", "-1")


def test_token_type_outside_type_vocabulary(small_model):
    with pytest.raises(InputError) as error:
        small_model(torch.tensor([[1, 5, 2]]), token_type_ids=torch.tensor([[0, 2, 0]]))
    _one_line_error(error, "token_type_ids", "2")


def test_attention_mask_of_wrong_shape(small_model):
    with pytest.raises(InputError) as error:
        small_model(torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 6, dtype=torch.long))
    _one_line_error(error, "attention_mask", "(2, 6)", "(2, 5)")
    with pytest.raises(InputError) as error:
        small_model(torch.ones(2, 5, dtype=torch.long), token_type_ids=torch.zeros(5, dtype=torch.long))
    _one_line_error(error, "token_type_ids", "(5,)")


def test_input_ids_must_be_two_dimensional(small_model):
    with pytest.raises(InputError) as error:
        small_model(torch.ones(5, dtype=torch.long))
    _one_line_error(error, "input_ids", "(5,)")


def test_torch_compile_full_graph_matches_eager(make_config, make_batch, randomize, diff_real):
    """torch.compile captures the whole model (no graph breaks on the padding mask) and changes nothing."""
    config = make_config("h36x3")
    model = _random_model(mb.BertModel, config, randomize).eval()
    batch = make_batch(config, seed=3)
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        compiled = torch.compile(model, fullgraph=True)(**batch).last_hidden_state
    diff = diff_real(compiled, expected, batch["attention_mask"])
    assert diff <= 1e-5, f"compiled model differs from eager by {diff:.3g}"


@pytest.mark.parametrize("head", [mb.BertForPreTraining, mb.BertForMaskedLM, mb.BertForNextSentencePrediction,
                                  mb.BertForSequenceClassification, mb.BertForTokenClassification,
                                  mb.BertForQuestionAnswering])
def test_a_head_initialises_its_encoder_once(head, make_config):
    """post_init: a head leaves the encoder it built as the encoder initialised it, so the same seed gives a head's
    encoder the weights of a bare BertModel; the head's own weights follow BERT's initialisation."""
    config = make_config()
    torch.manual_seed(0)
    encoder = mb.BertModel(config, with_pooler=head in (mb.BertForPreTraining, mb.BertForNextSentencePrediction,
                                                        mb.BertForSequenceClassification))
    torch.manual_seed(0)
    model = head(config)
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(model.bert.state_dict()[name], tensor), f"{head.__name__}: encoder {name} initialised twice"
    own = {name: t for name, t in model.state_dict().items() if not name.startswith("bert.")}
    for name, tensor in own.items():
        if name.endswith("bias"):
            assert not tensor.any(), f"{head.__name__}: {name} should start at zero"
        elif tensor.dim() == 2:
            assert abs(tensor.std().item() - config.initializer_range) < config.initializer_range / 2, \
                f"{head.__name__}: {name} should start normal(0, {config.initializer_range})"
