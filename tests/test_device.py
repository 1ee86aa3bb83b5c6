"""minibert on the device of `--device` (cpu by default; `make gpu-check` passes cuda) against references computed
on the CPU: every head in float32, bf16 inference (flash SDPA on CUDA), padding removal, one training step, and
real-weight embeddings. On CPU these repeat, cheaply, what other tests check; on a GPU they are the check."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import transformers

from minibert import model as mb
from minibert.inference import embed
from minibert.tokenizer import BertTokenizer

HEADS = [mb.BertModel, mb.BertForPreTraining, mb.BertForSequenceClassification, mb.BertForTokenClassification,
         mb.BertForQuestionAnswering]


def tolerance(device: torch.device) -> float:
    return 1e-5 if device.type == "cpu" else 1e-4  # GPU kernels sum in other orders


def on(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.parametrize("cls", HEADS)
def test_every_head_on_the_device_matches_transformers_on_cpu(cls, device, make_config, make_batch, randomize,
                                                              diff_real, tmp_path):
    config = make_config("h36x3")
    ours = randomize(cls(config), seed=5).eval()
    ours.save_pretrained(tmp_path)
    reference = getattr(transformers, cls.__name__).from_pretrained(tmp_path, attn_implementation="eager").eval()
    batch = make_batch(config)
    with torch.inference_mode():
        expected = reference(**batch)
        got = ours.to(device)(**on(batch, device))
    name = {"BertModel": "last_hidden_state", "BertForPreTraining": "prediction_logits",
            "BertForQuestionAnswering": "start_logits"}.get(cls.__name__, "logits")
    a, b = getattr(got, name).float().cpu(), getattr(expected, name)
    diff = diff_real(a, b, batch["attention_mask"]) if a.dim() > 2 or name == "start_logits" else \
        (a - b).abs().max().item()
    assert diff <= tolerance(device), f"{cls.__name__} on {device}: {name} differs from transformers by {diff:.2e}"


def test_bf16_inference_on_the_device_stays_close_to_float32(device, make_config, make_batch, randomize):
    config = make_config("h36x3")
    model = randomize(mb.BertModel(config), seed=6).eval()
    batch = make_batch(config)
    dense = {k: v[:1, :9] for k, v in batch.items()}  # no padding: SDPA may take its flash kernel on CUDA
    with torch.inference_mode():
        for inputs in (batch, dense):
            expected = model(**inputs).last_hidden_state
            got = copy.deepcopy(model).to(device, torch.bfloat16)(**on(inputs, device)).last_hidden_state
            real = inputs["attention_mask"].bool()
            cosine = torch.nn.functional.cosine_similarity(got.float().cpu()[real], expected[real]).min()
            assert cosine > 0.999, f"bf16 on {device}: a token's output at cosine {cosine:.4f} to float32"


def test_padding_removal_on_the_device_changes_nothing(device, make_config, make_batch, randomize, diff_real):
    config = make_config("h30x2")
    model = randomize(mb.BertModel(config), seed=7).eval().to(device)
    batch = on(make_batch(config), device)
    with torch.inference_mode():
        unpadded, padded = model(**batch, unpad=True), model(**batch, unpad=False)
    diff = diff_real(unpadded.last_hidden_state.cpu(), padded.last_hidden_state.cpu(), batch["attention_mask"].cpu())
    assert diff <= tolerance(device), f"padding removal on {device} changed real tokens by {diff:.2e}"


def test_a_training_step_on_the_device_matches_cpu(device, make_config, make_batch, randomize):
    config = make_config("h36x3", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cpu_model = randomize(mb.BertForSequenceClassification(config), seed=8).train()
    device_model = copy.deepcopy(cpu_model).to(device)
    batch = make_batch(config)
    labels = torch.tensor([0, 1, 0, 1])
    losses, grads = [], []
    for model, where in ((cpu_model, torch.device("cpu")), (device_model, device)):
        loss = model(**on(batch, where), labels=labels.to(where)).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten().cpu() for p in model.parameters() if p.grad is not None]))
    assert abs(losses[0] - losses[1]) <= tolerance(device), f"loss on {device}: {losses[1]} vs cpu {losses[0]}"
    assert (grads[0] - grads[1]).abs().max() <= 10 * tolerance(device), f"gradients on {device} differ from cpu"


def test_real_weight_embeddings_on_the_device(device, minilm_dir):
    texts = ["A gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés", "bad."]
    tokenizer = BertTokenizer.from_pretrained(minilm_dir)
    model = mb.BertModel.from_pretrained(minilm_dir)
    expected = embed(model, texts, tokenizer=tokenizer)
    got = embed(copy.deepcopy(model).to(device), texts, tokenizer=tokenizer)
    assert (got - expected).abs().max() <= tolerance(device), f"MiniLM embeddings on {device} differ from cpu"


MISSING = [("not-a-device", "not a torch device")] + ([] if torch.cuda.is_available() else [("cuda", "sees no CUDA")])


@pytest.mark.parametrize("value, message", MISSING)
def test_a_device_the_machine_lacks_is_one_clear_line(value, message):
    done = subprocess.run([sys.executable, "-m", "pytest", "--device", value, "-q", "--co", "tests/test_device.py"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and message in done.stderr, f"expected one line naming --device {value}: " \
                                                            f"{done.stderr[-500:]}"
