"""Layer-by-layer comparison of minibert with Hugging Face transformers on the same checkpoint.

This is the one module that imports `transformers`, and only inside `compare`: the reference implementation is
what parity is measured against. Everything else in minibert runs without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minibert import model as M
from minibert.checkpoint import find_weights, read_weights
from minibert.errors import MinibertError
from minibert.plumbing.hub import resolve
from minibert.tokenizer import BertTokenizer

DEFAULT_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "BERT reads text in both directions at once.",
    "Naïve café owners in São Paulo serve crème brûlée!",
    "東京は日本の首都です。",
    "Short.",
    "Pretraining on unlabeled text, then fine-tuning on a small labeled set, became the standard recipe for "
    "language understanding tasks in 2018 and 2019.",
]
DEFAULT_PAIRS = [
    ("How old are you?", "I am six years old."),
    ("Where is the station?", "The weather is nice today, though rain is expected tonight."),
]


@dataclass
class Row:
    name: str
    max_abs: float
    mean_abs: float


@dataclass
class ParityReport:
    checkpoint: str
    model_class: str
    dtype: str
    attn_implementation: str
    tolerance: float
    rows: list[Row] = field(default_factory=list)
    tokenizer_agreement: tuple[int, int] | None = None  # (identical encodings, total)

    @property
    def max_diff(self) -> float:
        return max((r.max_abs for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        tokens_ok = self.tokenizer_agreement is None or self.tokenizer_agreement[0] == self.tokenizer_agreement[1]
        return self.max_diff <= self.tolerance and tokens_ok and all(math.isfinite(r.max_abs) for r in self.rows)

    def table(self) -> str:
        width = max(len(r.name) for r in self.rows) if self.rows else 10
        lines = [f"checkpoint: {self.checkpoint}",
                 f"model: {self.model_class}   dtype: {self.dtype}   minibert attention: {self.attn_implementation}"
                 f"   reference: transformers (eager)",
                 f"{'output':<{width}}  {'max |diff|':>11}  {'mean |diff|':>11}",
                 f"{'-' * width}  {'-' * 11}  {'-' * 11}"]
        for r in self.rows:
            flag = "" if r.max_abs <= self.tolerance else "  <-- above tolerance"
            lines.append(f"{r.name:<{width}}  {r.max_abs:11.3e}  {r.mean_abs:11.3e}{flag}")
        if self.tokenizer_agreement is not None:
            same, total = self.tokenizer_agreement
            lines.append(f"tokenizer: {same}/{total} encodings identical to transformers' tokenizer")
        lines.append(f"{'PASS' if self.ok else 'FAIL'}: max |diff| {self.max_diff:.3e} "
                     f"(tolerance {self.tolerance:.0e})")
        return "\n".join(lines)


def head_class_for(weight_names: list[str], architectures: list[str] | None) -> str:
    """Pick the minibert/transformers class that uses every head the checkpoint carries."""
    names = " ".join(weight_names)
    has_mlm, has_nsp = "cls.predictions" in names, "cls.seq_relationship" in names
    if has_mlm and has_nsp:
        return "BertForPreTraining"
    if has_mlm:
        return "BertForMaskedLM"
    if has_nsp:
        return "BertForNextSentencePrediction"
    if "qa_outputs" in names:
        return "BertForQuestionAnswering"
    if "classifier" in names:
        arch = (architectures or [""])[0]
        return arch if arch in ("BertForSequenceClassification", "BertForTokenClassification") \
            else "BertForSequenceClassification"
    return "BertModel"


def _diff(name: str, a: torch.Tensor, b: torch.Tensor, real: torch.Tensor | None) -> Row:
    """Compare over real tokens only: outputs at padded query positions carry no meaning."""
    d = (a.double() - b.double()).abs()
    if real is not None and d.dim() >= 2 and tuple(d.shape[:2]) == tuple(real.shape):
        d = d[real]
    return Row(name, float(d.max()) if d.numel() else 0.0, float(d.mean()) if d.numel() else 0.0)


def compare(checkpoint: str, sentences: list[str] | None = None, pairs: list[tuple[str, str]] | None = None,
            dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
            tolerance: float | None = None, max_length: int = 128) -> ParityReport:
    try:
        import transformers
    except ImportError:
        raise MinibertError("minibert parity needs transformers as the reference: pip install transformers") \
            from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    folder = resolve(checkpoint)
    weight_names = list(read_weights(find_weights(folder)).keys())
    from minibert.config import BertConfig
    config = BertConfig.from_json(folder / "config.json")
    class_name = head_class_for(weight_names, config.extra.get("architectures"))

    ours = getattr(M, class_name).from_pretrained(folder, attn_implementation=attn_implementation).to(dtype).eval()
    ours.load_report.check_trained("parity")  # a random part would compare two random initialisations
    theirs = getattr(transformers, class_name).from_pretrained(str(folder), attn_implementation="eager")
    theirs = theirs.to(dtype).eval()

    tokenizer = BertTokenizer.from_pretrained(folder) if _has_tokenizer(folder) else None
    sentences = sentences or DEFAULT_SENTENCES
    pairs = pairs if pairs is not None else DEFAULT_PAIRS
    report = ParityReport(str(checkpoint), class_name, str(dtype).replace("torch.", ""), attn_implementation,
                          tolerance if tolerance is not None else (1e-4 if dtype == torch.float32 else 1e-10))
    if tokenizer is None:
        raise MinibertError(f"{folder}: no tokenizer.json or vocab.txt to encode the test sentences")
    report.tokenizer_agreement = _tokenizer_agreement(tokenizer, folder, sentences, pairs, max_length)

    batches = [("", tokenizer(sentences, max_length=max_length))]
    if pairs:
        batches.append(("pairs: ", tokenizer([a for a, _ in pairs], [b for _, b in pairs], max_length=max_length)))
    for prefix, batch in batches:
        with torch.inference_mode():
            a = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True)
            b = theirs(**batch, output_hidden_states=True)
        real = batch["attention_mask"].bool()
        b_hidden = b.hidden_states if b.hidden_states is not None else ()
        for i, (x, y) in enumerate(zip(a.hidden_states, b_hidden)):
            report.rows.append(_diff(prefix + ("embeddings" if i == 0 else f"layer {i}"), x, y, real))
        for name in ("pooler_output", "prediction_logits", "seq_relationship_logits", "logits", "start_logits",
                     "end_logits"):
            x, y = getattr(a, name, None), getattr(b, name, None)
            if x is not None and y is not None:
                report.rows.append(_diff(prefix + name, x, y, real))
    return report


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()


def _tokenizer_agreement(tokenizer: BertTokenizer, folder: Path, sentences, pairs, max_length) -> tuple[int, int]:
    from transformers import AutoTokenizer
    reference = AutoTokenizer.from_pretrained(str(folder))
    same = total = 0
    for text in sentences:
        ours = tokenizer([text], max_length=max_length)["input_ids"][0].tolist()
        same += ours == reference(text, truncation=True, max_length=max_length)["input_ids"]
        total += 1
    for a, b in pairs:
        ours = tokenizer([a], [b], max_length=max_length)
        theirs = reference(a, b, truncation=True, max_length=max_length)
        same += (ours["input_ids"][0].tolist() == theirs["input_ids"]
                 and ours["token_type_ids"][0].tolist() == theirs["token_type_ids"])
        total += 1
    return same, total
