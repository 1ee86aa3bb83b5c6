"""What each head the checkpoint carries says about one input: the pooler, masked-LM top-k at each [MASK], the
next-sentence probability, class probabilities with label names, tags, an answer span; and which heads it lacks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from minibert import model as M
from minibert.explain.loading import LoadedModel
from minibert.explain.trace import Trace, code_location, encoder_of
from minibert.tokenizer import BertTokenizer


@dataclass
class HeadReadout:
    """What each head the checkpoint carries says; `absent` says which it does not carry, in words."""
    pooled_norm: float | None = None
    mlm: list[tuple[int, list[tuple[str, float]]]] | None = None  # per [MASK]: (position, top-k (token, p))
    nsp_is_next: float | None = None  # P(B follows A), label 0 of the NSP head
    classes: list[tuple[str, float]] | None = None  # (label, probability), in label order
    score: float | None = None  # a regression head's output
    token_labels: list[tuple[str, float]] | None = None  # per token: (best label, its probability)
    answer: tuple[int, int, float] | None = None  # QA: best (start, end) and P(start) * P(end)
    computed_by: dict[str, str] = field(default_factory=dict)  # head -> the function that computes it
    absent: list[str] = field(default_factory=list)


def read_heads(loaded: LoadedModel, trace: Trace, ids: list[int], tokenizer: BertTokenizer,
               top_k: int) -> HeadReadout:
    readout = HeadReadout()
    _read_pooler(loaded, trace, readout)
    _read_masked_lm(loaded.model, trace.output, ids, tokenizer, top_k, readout)
    _read_next_sentence(loaded.model, trace.output, readout)
    _read_fine_tuned(loaded, trace.output, readout)
    return readout


def _read_pooler(loaded: LoadedModel, trace: Trace, readout: HeadReadout) -> None:
    model = loaded.model
    prefix = "pooler." if isinstance(model, M.BertModel) else "bert.pooler."
    if trace.pooled is not None and not any(name.startswith(prefix) for name in loaded.untrained):
        readout.pooled_norm = float(trace.pooled.float().norm())
        readout.computed_by["pooler"] = code_location(M.Pooler.forward)
    elif encoder_of(model).pooler is None:
        readout.absent.append(f"no pooler ({type(model).__name__} has none: nothing reads [CLS] alone)")
    else:
        readout.absent.append("no pooler weights in the checkpoint (the pooler would be random: not shown)")


def _read_masked_lm(model, out, ids: list[int], tokenizer: BertTokenizer, top_k: int, readout: HeadReadout) -> None:
    if not hasattr(model, "mlm"):
        readout.absent.append("no masked-LM head (the checkpoint has no cls.predictions.* tensors): "
                              "no [MASK] predictions")
        return
    logits = out.prediction_logits if isinstance(out, M.PreTrainingOutput) else out.logits  # (1, T, V)
    readout.mlm = []
    for position in [i for i, token in enumerate(ids) if token == tokenizer.mask_id]:
        probs = logits[0, position].float().softmax(-1)  # (V,)
        top = probs.topk(min(top_k, probs.numel()))
        tokens = tokenizer.convert_ids_to_tokens(top.indices.tolist())
        readout.mlm.append((position, list(zip(tokens, top.values.tolist()))))
    readout.computed_by["mlm"] = code_location(M.MaskedLMHead.forward)


def _read_next_sentence(model, out, readout: HeadReadout) -> None:
    if not hasattr(model, "nsp"):
        readout.absent.append("no next-sentence head (no cls.seq_relationship.* tensors)")
        return
    logits = out.seq_relationship_logits if isinstance(out, M.PreTrainingOutput) else out.logits  # (1, 2)
    readout.nsp_is_next = float(logits[0].float().softmax(-1)[0])
    readout.computed_by["nsp"] = code_location(type(model).forward)


def _read_fine_tuned(loaded: LoadedModel, out, readout: HeadReadout) -> None:
    model, config = loaded.model, loaded.model.config
    if isinstance(model, M.BertForSequenceClassification):
        logits = out.logits[0].float()  # (C,)
        if config.num_labels == 1 or config.problem_type == "regression":
            readout.score = float(logits[0])
        elif config.problem_type == "multi_label_classification":  # independent yes/no per label
            readout.classes = list(zip(loaded.labels, logits.sigmoid().tolist()))
        else:
            readout.classes = list(zip(loaded.labels, logits.softmax(-1).tolist()))
    elif isinstance(model, M.BertForTokenClassification):
        best = out.logits[0].float().softmax(-1).max(-1)  # (T, C) -> (T,)
        readout.token_labels = [(loaded.labels[i], p) for p, i in zip(best.values.tolist(), best.indices.tolist())]
    elif isinstance(model, M.BertForQuestionAnswering):
        start, end = out.start_logits[0].float().softmax(-1), out.end_logits[0].float().softmax(-1)  # (T,)
        scores = torch.triu(start[:, None] * end[None, :])  # (T, T): P(start) * P(end), end >= start
        best, tokens = int(scores.argmax()), scores.shape[0]
        readout.answer = (best // tokens, best % tokens, float(scores.flatten()[best]))
    else:
        readout.absent.append("no fine-tuned head (classifier, tagger or QA)")
        return
    readout.computed_by["qa" if readout.answer is not None else "classifier"] = code_location(type(model).forward)
