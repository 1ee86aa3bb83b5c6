"""ELECTRA (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators"):
replaced-token detection, read top to bottom in the order one step computes it:

    masked input -> generator (a small masked LM) -> a token sampled at every masked position
                 -> corrupted input -> discriminator (a plain BERT) -> "replaced or original?" for every token
    loss = generator MLM loss + λ · discriminator binary cross-entropy, λ = 50

Why: MLM learns from the ~15% of tokens that are masked; the discriminator learns from every token, and the paper
finds the gain largest for small models (§3.5). After pretraining the generator is set aside and the discriminator
is fine-tuned like BERT: `save_pretrained` writes it as a plain BERT encoder that minibert and transformers load.

Sections: settings, the discriminator's head, corruption (sampling and labels), the model, saving and loading,
then what the training loop asks (minibert.training.task): the task and its held-out metrics.

Shapes: B batch, T tokens, D hidden, V vocabulary, M masked positions (row-major order over (B, T)).

Masking is the data's own (minibert.pretraining.masking: 15% of tokens by default, 80% [MASK], 10% random, 10%
unchanged), read from a batch's `labels` (the original token at masked positions, IGNORE_INDEX elsewhere).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minibert.activations import ACTIVATIONS
from minibert.checkpoint import find_weights, hf_name, load_exact, map_checkpoint, read_weights, write_model_files
from minibert.config import BertConfig
from minibert.errors import CheckpointError, ConfigError, TrainingError
from minibert.model import IGNORE_INDEX, BertForMaskedLM, BertModel, BertPreTrainedModel, masked_lm_loss
from minibert.plumbing.atomic_files import atomic_write_bytes, new_folder
from minibert.plumbing.hub import resolve
from minibert.pretraining.initialisation import InitScheme, initialise
from minibert.pretraining.objective import MaskedLMTally
from minibert.training.task import Batch, evaluation_mode, model_inputs, to_device, unwrap

RTD_WEIGHT = 50.0  # λ, the discriminator loss's weight (Appendix A; the released code's disc_weight)
GENERATOR = "generator"  # the generator's folder inside a saved ELECTRA model
RTD_HEAD = "rtd_head.safetensors"  # the discriminator's head, beside the encoder's model.safetensors
EVAL_SAMPLING_SEED = 0  # evaluation samples replacements from its own generator: every evaluation draws alike


# ----------------------------------------------------------------------------------------------------------------
# Settings. The generator is a masked LM as wide as the discriminator but shallower. The paper shrinks its width
# instead (§3.2, "Smaller Generators": 1/4 to 1/2 of the discriminator's size works best) and then needs a
# projection between the shared embeddings and a narrower encoder; shrinking depth keeps the embeddings shareable
# as they are. Default depth: half the discriminator's layers, at least 1.
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Electra:
    """`pretrain(objective="electra")` is `pretrain(objective=Electra())`; pass one to change a setting."""
    generator_layers: int | None = None  # None: half the discriminator's num_hidden_layers, at least 1
    rtd_weight: float = RTD_WEIGHT  # λ

    def __post_init__(self) -> None:
        layers = self.generator_layers
        if layers is not None and (not isinstance(layers, int) or isinstance(layers, bool) or layers < 1):
            raise ConfigError(f"generator_layers must be a positive integer (or None: half the discriminator's), "
                              f"got {layers!r}")
        if not (isinstance(self.rtd_weight, (int, float)) and math.isfinite(self.rtd_weight) and self.rtd_weight > 0):
            raise ConfigError(f"rtd_weight must be a positive number, got {self.rtd_weight!r}")


OBJECTIVES = ("mlm", "electra")  # pretrain(objective=...): BERT's masked LM (+ NSP), or replaced-token detection


def electra_settings(objective: str | Electra) -> Electra | None:
    """ELECTRA's settings for objective "electra" (the defaults) or an Electra; None for "mlm"."""
    if isinstance(objective, Electra):
        return objective
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    return Electra() if objective == "electra" else None


def generator_config(config: BertConfig, layers: int | None = None) -> BertConfig:
    """The generator's config: the discriminator's with `layers` layers (None: half of its layers, at least 1)."""
    return config.replace(num_hidden_layers=layers if layers is not None else max(1, config.num_hidden_layers // 2))


# ----------------------------------------------------------------------------------------------------------------
# The discriminator's head (§2): D(x, t) = sigmoid(wᵀ h_D(x)_t), one logit per token. As in the released code
# (and transformers' ElectraDiscriminatorPredictions), a dense layer and the activation come before w.
# ----------------------------------------------------------------------------------------------------------------
class ReplacedTokenDetectionHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        logits = self.prediction(self.activation(self.dense(hidden)))  # (B, T, D) -> (B, T, D) -> (B, T, 1)
        return logits.squeeze(-1)  # (B, T, 1) -> (B, T)


def replaced_token_detection_loss(logits: Tensor, replaced: Tensor, real: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of (B, T) logits against (B, T) replaced labels, over the real (non-padding) tokens
    `real` (B, T) marks; computed in float32 also under autocast."""
    return F.binary_cross_entropy_with_logits(logits.float()[real], replaced[real].float(),  # (B, T) -> (N,)
                                              reduction=reduction)


# ----------------------------------------------------------------------------------------------------------------
# Corruption (§2): every masked position takes a token sampled from the generator's softmax, and the
# discriminator's label says whether the token there now differs from the original. "If the generator happens to
# generate the correct token, that token is considered real": a sample equal to the original is labelled original.
# ----------------------------------------------------------------------------------------------------------------
def sample_tokens(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of (M, V) logits, drawn from softmax(logits) by the Gumbel-max trick: the argmax of
    logits + Gumbel noise is a draw from the softmax (the released code samples this way too). The noise takes one
    uniform number per logit, row after row, so a step split into micro-batches draws the tokens the whole batch
    would. No gradient: the discriminator's loss does not reach the generator through the sample (§2)."""
    with torch.no_grad():
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device)  # (M, V) in [0, 1)
        gumbel = -torch.log(-torch.log(uniform))  # a 0 gives -inf: that token is never drawn
        return (logits.detach().float() + gumbel).argmax(-1)  # (M, V) -> (M,)


def corrupt(input_ids: Tensor, labels: Tensor, sampled: Tensor) -> tuple[Tensor, Tensor]:
    """The discriminator's input and labels: `sampled` (M,) written into the masked positions of input_ids (B, T)
    (where labels != IGNORE_INDEX, row-major), and (B, T) booleans, True where the token differs from the
    original (the label at masked positions, the input elsewhere)."""
    masked = labels != IGNORE_INDEX  # (B, T)
    corrupted = input_ids.masked_scatter(masked, sampled.to(input_ids.dtype))  # (M,) -> (B, T), row-major
    originals = torch.where(masked, labels, input_ids)  # (B, T)
    return corrupted, corrupted != originals


def real_tokens(input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    """(B, T) booleans, True on real tokens: the discriminator predicts for these and never for padding."""
    return torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()


# ----------------------------------------------------------------------------------------------------------------
# The model (§2 and §3.2): generator and discriminator share one embedding block (word, position and token type
# embeddings and their LayerNorm, as the released code shares its "embeddings" scope: §3.2, "Weight Sharing"),
# and the generator's MLM decoder is tied to those word embeddings (as BERT's). Both are trained together on the
# sum of their losses; only the discriminator is kept for fine-tuning.
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ElectraOutput:
    loss: Tensor  # mlm_loss + rtd_weight * rtd_loss
    mlm_loss: Tensor  # the generator's cross-entropy, mean over masked tokens
    rtd_loss: Tensor  # the discriminator's binary cross-entropy, mean over real tokens
    masked_logits: Tensor  # (M, V): the generator's logits at masked positions, row-major
    rtd_logits: Tensor  # (B, T): the discriminator's logit that each token was replaced
    replaced: Tensor  # (B, T) booleans: the discriminator's labels (meaningful on real tokens)
    corrupted_ids: Tensor  # (B, T): the discriminator's input


class ElectraForPreTraining(BertPreTrainedModel):
    """`config` is the discriminator's (a plain BERT encoder, no pooler: replaced-token detection never reads
    [CLS] through one); the generator is the same but `generator_layers` deep (see `generator_config`)."""

    def __init__(self, config: BertConfig, generator_layers: int | None = None, rtd_weight: float = RTD_WEIGHT):
        super().__init__()
        self.config, self.rtd_weight = config, rtd_weight
        self.generator = BertForMaskedLM(generator_config(config, generator_layers))
        self.discriminator = BertModel(config, with_pooler=False)
        self.generator.bert.embeddings = self.discriminator.embeddings  # one module, so one set of parameters
        self.rtd = ReplacedTokenDetectionHead(config)
        self.post_init()  # the head; generator and discriminator initialised themselves

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None, *, labels: Tensor,
                sampler: torch.Generator | None = None) -> ElectraOutput:
        """Inputs as BertModel's; labels (B, T): the original token at masked positions, IGNORE_INDEX elsewhere.
        `sampler`: the random generator replacements are drawn from (None: torch's global one)."""
        # 1. The generator reads the masked input and predicts the original at masked positions (an MLM, §2).
        generated = self.generator(input_ids, attention_mask, token_type_ids, position_ids, labels=labels,
                                   masked_only=True)
        # 2. Corruption: a sampled token at every masked position (no gradient), and the replaced labels.
        corrupted, replaced = corrupt(input_ids, labels, sample_tokens(generated.masked_logits, sampler))
        # 3. The discriminator reads the corrupted input and says, for every token, whether it was replaced.
        hidden = self.discriminator(corrupted, attention_mask, token_type_ids, position_ids).last_hidden_state
        rtd_logits = self.rtd(hidden)  # (B, T, D) -> (B, T)
        # 4. The combined loss (§2): min L_MLM + λ L_Disc over both networks.
        rtd_loss = replaced_token_detection_loss(rtd_logits, replaced, real_tokens(input_ids, attention_mask))
        return ElectraOutput(loss=generated.loss + self.rtd_weight * rtd_loss, mlm_loss=generated.loss,
                             rtd_loss=rtd_loss, masked_logits=generated.masked_logits, rtd_logits=rtd_logits,
                             replaced=replaced, corrupted_ids=corrupted)

    # -- saving and loading -------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """folder/: the discriminator as a plain BERT encoder (config.json, model.safetensors; what fine-tuning and
        transformers' BertModel load), and its head in rtd_head.safetensors (transformers' ELECTRA names);
        folder/generator/: the generator as a BertForMaskedLM (`minibert fill-mask` reads it)."""
        folder = Path(folder)
        with new_folder(folder):
            self.discriminator.save_pretrained(folder)
            try:
                atomic_write_bytes(folder / RTD_HEAD, self._head_file())
            except OSError as e:  # as the encoder's own saving reports it
                raise CheckpointError(f"{folder / RTD_HEAD}: cannot write the model "
                                      f"({(e.strerror or str(e)).lower()})") from None
            self.generator.save_pretrained(folder / GENERATOR)

    def _head_file(self) -> bytes:
        from safetensors.torch import save
        head = {hf_name(f"rtd.{name}"): tensor.detach().to("cpu").contiguous()
                for name, tensor in self.rtd.state_dict().items()}
        return save(head, metadata={"format": "pt"})

    # A training checkpoint (minibert.training.train_state) holds the same files as save_pretrained, so a step
    # folder loads like final/; train_state calls these two instead of its single-network model.safetensors.
    def write_checkpoint_files(self, folder: Path) -> None:
        """save_pretrained's files into an existing folder, each replaced atomically; a failed write raises its
        OSError (train_state names the checkpoint and removes the partial one)."""
        write_model_files(self.discriminator, folder)
        atomic_write_bytes(folder / RTD_HEAD, self._head_file())
        (folder / GENERATOR).mkdir(exist_ok=True)
        write_model_files(self.generator, folder / GENERATOR)

    def load_checkpoint_files(self, folder: Path) -> None:
        """What write_checkpoint_files wrote, exactly: every tensor of each network, nothing left over."""
        load_exact(self.generator, folder / GENERATOR / "model.safetensors")
        load_exact(self.discriminator, folder / "model.safetensors")  # the shared embeddings end as its own
        _load_into(self.rtd, folder / RTD_HEAD, require_all=True, prefix="rtd.")

    def load_pretrained_weights(self, folder: str | os.PathLike) -> None:
        """Load what `save_pretrained` wrote into this model; from a plain BERT checkpoint (no generator/, no
        rtd_head.safetensors), the discriminator alone, the generator's layers and the head keeping their values.
        The generator is read first, so the shared embeddings end as the discriminator's."""
        folder = resolve(folder)
        if (folder / GENERATOR).is_dir():
            _load_into(self.generator, folder / GENERATOR, require_all=True)
        _load_into(self.discriminator, folder, require_all=False)
        if (folder / RTD_HEAD).is_file():
            _load_into(self.rtd, folder / RTD_HEAD, require_all=True, prefix="rtd.")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, generator_layers: int | None = None,
                        rtd_weight: float = RTD_WEIGHT, **config_overrides) -> "ElectraForPreTraining":
        """An ELECTRA model saved by `save_pretrained` (its generator's depth read from generator/config.json), or
        one to continue pretraining from a plain BERT checkpoint's encoder (the generator `generator_layers`
        deep, new but for the shared embeddings)."""
        folder = resolve(name_or_path)
        config = BertConfig.from_json(folder / "config.json").replace(**config_overrides)
        if (folder / GENERATOR / "config.json").is_file():
            generator_layers = BertConfig.from_json(folder / GENERATOR / "config.json").num_hidden_layers
        model = cls(config, generator_layers, rtd_weight)
        model.load_pretrained_weights(folder)
        return model.eval()


def _load_into(module: nn.Module, path: Path, require_all: bool, prefix: str = "") -> None:
    """Checkpoint tensors (Hugging Face names) from a folder or a weights file into `module`; minibert's loader
    checks names and shapes, and refuses a partial encoder. `require_all`: every tensor must be in the checkpoint.
    `prefix`: the module's own names carry it in the key map (the head's `rtd.`)."""
    weights = path if path.is_file() else find_weights(path)
    state = read_weights(weights)
    if prefix:  # the head's names map to Hugging Face's under its prefix in the key map
        named = {hf_name(prefix + name): name for name in module.state_dict()}
        missing = [name for name in named if name not in state]
        if missing:
            raise CheckpointError(f"{weights}: has no {', '.join(missing)}")
        mapped = {named[name]: state[name] for name in named}
    else:
        mapped, report = map_checkpoint(module, state, str(weights))
        if require_all and report.newly_initialised:
            raise CheckpointError(f"{weights}: has no tensors for {', '.join(report.newly_initialised[:3])}")
    module.load_state_dict(mapped, strict=require_all)


def build_electra(config: BertConfig, settings: Electra, init_from: str | os.PathLike | None,
                  seed: int) -> ElectraForPreTraining:
    """The model to pretrain: from scratch, or continuing `init_from` (see `ElectraForPreTraining.from_pretrained`).
    Seeded first: the initial weights, and so the run, follow from the seed."""
    torch.manual_seed(seed)
    if init_from is None:
        return ElectraForPreTraining(config, settings.generator_layers, settings.rtd_weight)
    return ElectraForPreTraining.from_pretrained(init_from, settings.generator_layers, settings.rtd_weight)


@torch.no_grad()
def initialise_electra(model: ElectraForPreTraining, scheme: InitScheme, token_counts=None,
                       cooccurrence=None) -> None:
    """A from-scratch initialisation scheme (minibert.pretraining.initialisation) applied to both networks: on the
    generator as on a BertForMaskedLM (the shared word and position embeddings, its attention, its MLM bias), then
    the discriminator's attention the same way."""
    initialise(model.generator, scheme, token_counts, cooccurrence)
    if scheme.query_equals_key:
        discriminator_only = InitScheme(query_equals_key=True)
        initialise(_EncoderView(model.config, model.discriminator), discriminator_only)


@dataclass
class _EncoderView:
    """What `initialise` reads of a model (its config and encoder), for the discriminator, which has no MLM head."""
    config: BertConfig
    bert: BertModel


# ----------------------------------------------------------------------------------------------------------------
# What the training loop asks (minibert.training.task): loss sums and counts, and held-out metrics.
# ----------------------------------------------------------------------------------------------------------------
class ElectraTask:
    """For ElectraForPreTraining, on MLM-only batches (input_ids, attention_mask, token_type_ids, labels; ELECTRA
    has no next-sentence prediction). Loss terms: "mlm" sums the generator's cross-entropy over masked tokens;
    "weighted_rtd" sums λ times the discriminator's binary cross-entropy over real tokens (so the step's loss is
    the paper's L_MLM + λ L_Disc, each term averaged over its own count). `mask_token_id` splits the generator's
    held-out accuracy by what the input showed (see MaskedLMTally)."""

    def __init__(self, mask_token_id: int | None = None):
        self.mask_token_id = mask_token_id

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        check_mlm_only(batch)
        return {"mlm": (batch["labels"] != IGNORE_INDEX).sum(),
                "weighted_rtd": real_tokens(batch["input_ids"], batch.get("attention_mask")).sum()}

    def loss_terms(self, model: nn.Module, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
        check_mlm_only(batch)
        output = model(**model_inputs(batch), labels=batch["labels"])
        return self.sums(output, batch, unwrap(model).rtd_weight)

    @staticmethod
    def sums(output: ElectraOutput, batch: Batch, rtd_weight: float) -> dict[str, tuple[Tensor, Tensor]]:
        labels = batch["labels"]
        targets = labels[labels != IGNORE_INDEX]  # (B, T) -> (M,), the order of masked_logits' rows
        real = real_tokens(batch["input_ids"], batch.get("attention_mask"))  # (B, T)
        rtd = replaced_token_detection_loss(output.rtd_logits, output.replaced, real, reduction="sum")
        return {"mlm": (masked_lm_loss(output.masked_logits, targets, reduction="sum"), targets.numel()),
                "weighted_rtd": (rtd_weight * rtd, real.sum())}

    def evaluate(self, model: nn.Module, loader: Iterable[Batch]) -> dict[str, float]:
        """The generator's MLM loss, accuracy and its baselines (MaskedLMTally's metrics, and perplexity); the
        discriminator's loss (`rtd_loss`, binary cross-entropy per real token), accuracy, precision and recall on
        replaced tokens and AUC (`rtd_auc`, see ReplacedTokenTally), beside `rtd_replaced_share`, the share of
        real tokens replaced (always answering "original" scores 1 minus it); `loss`, the objective: mlm_loss +
        λ rtd_loss. Replacements are drawn from a generator seeded alike at every evaluation, so two evaluations
        differ only by what the model learnt."""
        raw = unwrap(model)
        mlm, rtd = MaskedLMTally(self.mask_token_id), ReplacedTokenTally()
        with evaluation_mode(raw) as device:
            sampler = torch.Generator(device=device).manual_seed(EVAL_SAMPLING_SEED)
            for batch in loader:
                batch = to_device(batch, device)
                check_mlm_only(batch)
                output = raw(**model_inputs(batch), labels=batch["labels"], sampler=sampler)
                mlm.add(output.masked_logits, batch["input_ids"], batch["labels"])
                rtd.add(output.rtd_logits, output.replaced, real_tokens(batch["input_ids"],
                                                                         batch.get("attention_mask")))
        mlm_loss = mlm.loss["all"] / max(mlm.count["all"], 1)
        metrics = {"mlm_loss": mlm_loss, **mlm.metrics(),
                   "perplexity": math.exp(mlm_loss) if mlm_loss < 700 else math.inf, **rtd.metrics()}
        metrics["loss"] = mlm_loss + raw.rtd_weight * metrics["rtd_loss"]
        return metrics


def check_mlm_only(batch: Batch) -> None:
    if "next_sentence_label" in batch:
        raise TrainingError("ELECTRA has no next-sentence prediction, but the batch has next_sentence_label; "
                            "train it on MLM-only data (nsp=False)")


class ReplacedTokenTally:
    """The discriminator's held-out counts: a token is predicted replaced when its logit is above 0.

    Beside the thresholded figures, the AUC: the chance that a replaced token scores above an original one, from a
    histogram of the logits (AUC_BINS bins over ±AUC_RANGE; ties within a bin count half, as the released code's
    histogram AUC does). A discriminator that ranks replaced tokens higher but never reaches a logit of 0 (the
    first thousands of steps of a small model) shows no recall yet an AUC above 0.5; one that learnt nothing
    shows 0.5."""

    AUC_BINS, AUC_RANGE = 2000, 20.0

    def __init__(self):
        self.real = self.replaced = self.predicted = self.true_positives = self.correct = 0
        self.loss = 0.0  # summed binary cross-entropy
        self.histograms = torch.zeros(2, self.AUC_BINS, dtype=torch.float64)  # (original, replaced) x bins

    def add(self, logits: Tensor, replaced: Tensor, real: Tensor) -> None:
        truth, scores = replaced[real], logits[real].float()  # (B, T) -> (N,)
        predicted = scores > 0
        self.real += truth.numel()
        self.replaced += int(truth.sum())
        self.predicted += int(predicted.sum())
        self.true_positives += int((truth & predicted).sum())
        self.correct += int((truth == predicted).sum())
        self.loss += float(replaced_token_detection_loss(logits, replaced, real, reduction="sum"))
        for row, selected in enumerate((~truth, truth)):
            self.histograms[row] += torch.histc(scores[selected].clamp(-self.AUC_RANGE, self.AUC_RANGE).cpu(),
                                                self.AUC_BINS, -self.AUC_RANGE, self.AUC_RANGE).double()

    def auc(self) -> float:
        original, replaced = self.histograms  # (bins,) each
        below = torch.cumsum(original, 0) - original  # originals in lower bins than each bin
        pairs = float(original.sum() * replaced.sum())
        return float((replaced * (below + original / 2)).sum()) / pairs if pairs else 0.5

    def metrics(self) -> dict[str, float]:
        def share(part: int, whole: int) -> float:
            return part / max(whole, 1)

        return {"rtd_loss": share(self.loss, self.real), "rtd_accuracy": share(self.correct, self.real),
                "rtd_precision": share(self.true_positives, self.predicted),
                "rtd_recall": share(self.true_positives, self.replaced), "rtd_auc": self.auc(),
                "rtd_replaced_share": share(self.replaced, self.real)}
