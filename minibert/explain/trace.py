"""Run a model once on one input and keep what every stage computed.

The values are caught with forward hooks on the model's own modules, so model.py keeps its reading path free of
instrumentation and every number is the one the model computed (tests hold the trace equal to the model's
`output_hidden_states` and `output_attentions`). One input at a time: each tensor here drops the batch axis.

`COMPUTED_BY` names, for each stage, the function in minibert that computes it. The names are derived from the code
objects (module file and `__qualname__`), so a rename or a move changes what explain prints, and a test that imports
every printed name back fails rather than letting explain point at code that is not there.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

import minibert
from minibert import model as M
from minibert.errors import InputError
from minibert.tokenizer import BertTokenizer

PACKAGE_ROOT = Path(minibert.__file__).resolve().parent

# stage -> the function that computes it
COMPUTED_BY: dict[str, Callable] = {
    "wordpiece": BertTokenizer.__call__,
    "embeddings": M.Embeddings.forward,
    "qkv": M.SelfAttention.forward,
    "attention": M.attention,
    "residual": M.EncoderLayer.forward,
    "feed_forward": M.FeedForward.forward,
    "pooler": M.Pooler.forward,
    "mlm": M.MaskedLMHead.forward,
}


def code_location(function: Callable) -> str:
    """'model.py: Embeddings.forward': the file under the minibert package and the qualified name."""
    function = inspect.unwrap(function)
    path = Path(inspect.getsourcefile(function)).resolve().relative_to(PACKAGE_ROOT)
    return f"{path.as_posix()}: {function.__qualname__}"


def computed_by(stage: str) -> str:
    return code_location(COMPUTED_BY[stage])


@dataclass
class LayerTrace:
    """One encoder layer. The hooked values are None when a module did not run (a learner's edit of model.py can
    skip one); `attention` and `output` come from the model's own output_attentions / output_hidden_states."""
    query: Tensor  # (H, T, Dh)
    key: Tensor  # (H, T, Dh)
    value: Tensor  # (H, T, Dh)
    attention: Tensor  # (H, T, T) softmax probabilities; row = the query token, column = the key token
    attention_residual: Tensor | None  # (T, D) what attention_norm normalises: x + attention output in BERT
    attention_normed: Tensor | None  # (T, D) attention_norm's output
    ffn_activation: Tensor | None  # (T, 4D) after the activation: what ffn.output reads
    ffn_residual: Tensor | None  # (T, D) what ffn_norm normalises: x + feed-forward output in BERT
    output: Tensor  # (T, D) this layer's hidden state, hidden_states[i + 1]


@dataclass
class Trace:
    input_ids: Tensor  # (T,)
    token_type_ids: Tensor  # (T,)
    position_ids: Tensor  # (T,)
    word: Tensor | None  # (T, D) word (token) embeddings
    position: Tensor | None  # (T, D) position embeddings
    segment: Tensor | None  # (T, D) segment (token type) embeddings
    embedding_sum: Tensor | None  # (T, D) what the embeddings' LayerNorm normalises: their sum
    embeddings: Tensor  # (T, D) after LayerNorm: hidden_states[0]
    layers: list[LayerTrace]
    pooled: Tensor | None  # (D,) the pooler's output; None for models without a pooler
    output: Any  # the model's own output object, with hidden_states and attentions


def encoder_of(model: nn.Module) -> M.BertModel:
    return model if isinstance(model, M.BertModel) else model.bert


class _Recorder:
    """Forward hooks that keep a module's input or output under a name; removed when the run is over."""

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def output_of(self, name: str, module: nn.Module) -> None:
        def keep(_module, _args, output):
            self.values[name] = output
        self.handles.append(module.register_forward_hook(keep))

    def input_of(self, name: str, module: nn.Module) -> None:
        def keep(_module, args):
            self.values[name] = args[0]
        self.handles.append(module.register_forward_pre_hook(keep))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _watch(recorder: _Recorder, encoder: M.BertModel) -> None:
    emb = encoder.embeddings
    recorder.output_of("word", emb.word_embeddings)
    recorder.output_of("position", emb.position_embeddings)
    recorder.output_of("segment", emb.token_type_embeddings)
    recorder.input_of("embedding_sum", emb.norm)
    for i, layer in enumerate(encoder.layers):
        for name in ("query", "key", "value"):
            recorder.output_of(f"{i}.{name}", getattr(layer.attention, name))
        recorder.input_of(f"{i}.attention_residual", layer.attention_norm)
        recorder.output_of(f"{i}.attention_normed", layer.attention_norm)
        recorder.input_of(f"{i}.ffn_activation", layer.ffn.output)
        recorder.input_of(f"{i}.ffn_residual", layer.ffn_norm)
    if encoder.pooler is not None:
        recorder.output_of("pooled", encoder.pooler)


@contextmanager
def masked_heads(model: nn.Module, heads: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Silence attention heads, given as (layer, head) indices from 0: each one's output is zeroed where the heads are
    concatenated, just before `attention.output` mixes them. This is what transformers' `head_mask` did (a head
    whose probabilities are multiplied by 0 contributes nothing); the head's own probabilities are unchanged."""
    encoder = encoder_of(model)
    config = encoder.config
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        if not (0 <= layer < config.num_hidden_layers and 0 <= head < config.num_attention_heads):
            raise InputError(f"--mask-head {layer + 1}:{head + 1}: this model has layers 1-"
                             f"{config.num_hidden_layers} and heads 1-{config.num_attention_heads}")
        by_layer.setdefault(layer, []).append(head)
    size = config.head_size
    handles = []
    for layer, layer_heads in by_layer.items():
        def silence(_module, args, layer_heads=layer_heads):
            concatenated = args[0].clone()  # (..., D) = (..., H * Dh), heads side by side
            for head in layer_heads:
                concatenated[..., head * size:(head + 1) * size] = 0
            return (concatenated, *args[1:])
        handles.append(encoder.layers[layer].attention.output.register_forward_pre_hook(silence))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _split_heads(x: Tensor, heads: int) -> Tensor:
    return x.view(x.shape[0], heads, -1).transpose(0, 1)  # (T, D) -> (T, H, Dh) -> (H, T, Dh)


@torch.inference_mode()
def run_trace(model: nn.Module, input_ids: Tensor, token_type_ids: Tensor,
              mask_heads: Sequence[tuple[int, int]] = ()) -> Trace:
    """input_ids, token_type_ids: (1, T), one unpadded input. The model runs in eval mode (no dropout)."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise InputError(f"run_trace takes one input of shape (1, T), got input_ids {tuple(input_ids.shape)}")
    model.eval()
    encoder = encoder_of(model)
    heads = encoder.config.num_attention_heads
    recorder = _Recorder()
    _watch(recorder, encoder)
    try:
        with masked_heads(model, mask_heads):
            output = model(input_ids, attention_mask=torch.ones_like(input_ids), token_type_ids=token_type_ids,
                           output_hidden_states=True, output_attentions=True)
    finally:
        recorder.remove()
    # Between layers the model carries (N, D) or (B, T, D) depending on its fast path; with one unpadded input both
    # are the T tokens in order, so every captured value becomes (T, D) here (the pooler's (1, D) becomes (D,)).
    v = {name: value.reshape(-1, value.shape[-1]) for name, value in recorder.values.items()}
    tokens = input_ids.shape[1]
    layers = [LayerTrace(
        query=_split_heads(v[f"{i}.query"], heads), key=_split_heads(v[f"{i}.key"], heads),
        value=_split_heads(v[f"{i}.value"], heads), attention=output.attentions[i][0],
        attention_residual=v.get(f"{i}.attention_residual"), attention_normed=v.get(f"{i}.attention_normed"),
        ffn_activation=v.get(f"{i}.ffn_activation"), ffn_residual=v.get(f"{i}.ffn_residual"),
        output=output.hidden_states[i + 1][0])
        for i in range(len(encoder.layers))]
    return Trace(input_ids=input_ids[0], token_type_ids=token_type_ids[0],
                 position_ids=torch.arange(tokens, device=input_ids.device),
                 word=v.get("word"), position=v.get("position"), segment=v.get("segment"),
                 embedding_sum=v.get("embedding_sum"), embeddings=output.hidden_states[0][0], layers=layers,
                 pooled=v["pooled"][0] if "pooled" in v else None, output=output)
