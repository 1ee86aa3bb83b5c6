"""Fine-tuning (BERT 2018, section 4): put a task's head on a pretrained encoder and train the whole model.

    result = finetune(minilm_folder, "classification", "reviews.csv", "runs/rt",
                      where={"source": "rotten_tomatoes"}, num_epochs=2, learning_rate=1e-4)

A notebook and `minibert finetune` call this one function. It reads the task's data (readers.py), holds out a
validation set, builds the label map from the training labels, encodes the examples (features.py), loads the
checkpoint with the head the task needs, and hands everything to the shared training loop (minibert.training),
which evaluates with the task's real metrics (metrics.py), keeps the best checkpoint and can stop early. The
chosen model is saved in Hugging Face's layout with its tokenizer and label map, so both minibert (`predict`)
and transformers load it.

Output folder: the loop's checkpoints/, metrics.jsonl and curves.png; final/ (the last step's model); best/
(written only when an earlier evaluation beat the last one). `FinetuneResult.model_dir` names the one to use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from minibert.config import POOLINGS, BertConfig
from minibert.errors import CheckpointError, DataError, MinibertError, ShapeMismatchError, spelled
from minibert.plumbing.hub import resolve
from minibert.inference import longest_first
from minibert.model import IGNORE_INDEX, BertForSequenceClassification, BertPreTrainedModel
from minibert.plumbing.output_lock import output_lock
from minibert.finetuning.features import (Feature, QAFeature, collate, default_doc_stride,
                                          encode_classification, encode_qa, encode_token_classification,
                                          word_predictions)
from minibert.finetuning import mean_pooling
from minibert.finetuning.reinit import check_reinit_layers, reinit_top_layers
from minibert.finetuning.kinds import TaskKind, task_kind, write_label_map
from minibert.finetuning.metrics import compute_metrics
from minibert.finetuning.qa_decoding import QADecoding, decode_answers
from minibert.finetuning.readers import (GlueTask, QAExample, TaggedSentence, build_label_map, glue_task,
                                         load_hub_dataset, parse_score, read_conll, read_examples, read_glue,
                                         read_squad)
from minibert.tokenizer import BertTokenizer
from minibert.finetuning.objective import (FineTuningTask, MetricFn, QuestionAnsweringTask, SequenceClassificationTask,
                                           TokenClassificationTask)
from minibert.training import TrainingArguments, TrainResult, train_state, train
from minibert.training.processes import choose_device, launched_rank, launched_world_size
from minibert.training.reporting import MetricsLog
from minibert.training.model_card import CARD_SETTINGS, ModelCard
from minibert.training.run_folder import check_output_dir
from minibert.plumbing.machine import machine_facts

logger = logging.getLogger("minibert")

HUB_PREFIX = "hub:"


# -- reading the data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSpec:
    """How to read a task's files. Columns apply to CSV/TSV/JSONL tables and hub datasets, `where` to tables;
    GLUE files use their task's columns; CoNLL (ner) and SQuAD (qa) files have fixed layouts."""
    text_column: str = "text"
    pair_column: str | None = None
    label_column: str = "label"
    format: str | None = None  # csv, tsv or jsonl; None: from the file's extension
    where: Mapping[str, str] | None = None  # keep only rows with these column values
    glue_task: str | None = None  # read the files as this GLUE task's TSVs
    encoding: str = "utf-8"  # the files' text encoding


def read_task_examples(kind: TaskKind, source: str | os.PathLike, spec: DataSpec,
                       default_split: str = "train") -> list:
    """Examples of one file (or hub dataset, `hub:NAME[:CONFIG][@SPLIT]`) for a task kind."""
    if str(source).startswith(HUB_PREFIX):
        return _read_hub(kind, str(source)[len(HUB_PREFIX):], spec, default_split)
    if kind.name == "qa":
        return read_squad(source, spec.encoding)
    if kind.name == "ner":
        return read_conll(source, spec.encoding)
    if spec.glue_task is not None:
        return read_glue(spec.glue_task, source, spec.encoding)
    examples = read_examples(source, spec.text_column, spec.pair_column, spec.label_column, spec.format, spec.where,
                             spec.encoding)
    if kind.name == "regression":  # now, naming the line, rather than as a NaN loss many steps later
        for example in examples:
            parse_score(example.label, example.origin)
    return examples


def _read_hub(kind: TaskKind, name: str, spec: DataSpec, default_split: str) -> list:
    if kind.name not in ("classification", "regression"):
        raise DataError(f"hub:{name}: hub datasets are read for classification and regression only; export the "
                        f"{kind.name} data to a file (CoNLL or SQuAD JSON)")
    if spec.where:
        raise DataError(f"hub:{name}: `where` filters rows of files only")
    name, _, split = name.partition("@")
    name, _, config = name.partition(":")
    return load_hub_dataset(name, split or default_split, spec.text_column, spec.pair_column, spec.label_column,
                            config or None)


def split_off_validation(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded random `fraction` held out, so that the same seed holds out the same
    examples on every run and machine. Each part keeps the file's order."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"{spelled('validation_fraction')} must be between 0 and 1, got {fraction}")
    held_out = max(1, round(fraction * len(examples)))
    if held_out >= len(examples):
        raise DataError(f"{len(examples)} examples are too few to hold out {fraction:.0%} and still train")
    order = np.random.default_rng(seed).permutation(len(examples))
    return ([examples[i] for i in sorted(order[held_out:])], [examples[i] for i in sorted(order[:held_out])])


def label_list(kind: TaskKind, examples: Sequence, glue: GlueTask | None) -> list[str] | None:
    """Labels in id order, from the training data (a GLUE task's own label set when it has one): sorted, so a
    label keeps its id from run to run. None for regression and QA, which have no classes."""
    if kind.name in ("regression", "qa"):
        return None
    if glue is not None and glue.labels is not None:
        return list(build_label_map(glue.labels))
    if kind.name == "ner":
        return list(build_label_map(tag for sentence in examples for tag in sentence.tags))
    return list(build_label_map(example.label for example in examples))


def check_classes(kind: TaskKind, examples: Sequence, source: str | os.PathLike) -> None:
    """A training set with one class (or one tag) teaches nothing, and its validation accuracy of 1.0 means
    nothing: refuse it, naming the file and the one label."""
    if kind.name == "classification":
        found = {example.label for example in examples}
    elif kind.name == "ner":
        found = {tag for sentence in examples for tag in sentence.tags}
    else:
        return
    if len(found) < 2:
        what, classes = ("example has the label", "classes") if kind.name == "classification" else \
            ("token has the tag", "tags")
        raise DataError(f"{source}: every training {what} {next(iter(found), None)!r}; {kind.name} needs at least "
                        f"two {classes} in the training data")


def encode(kind: TaskKind, tokenizer: BertTokenizer, examples: Sequence, labels: list[str] | None,
           max_length: int, doc_stride: int) -> list[Feature] | list[QAFeature]:
    """Model inputs for a kind; a label missing from `labels` raises DataError naming its file and line."""
    label_map = None if labels is None else {label: i for i, label in enumerate(labels)}
    if kind.name == "qa":
        return encode_qa(tokenizer, examples, max_length, doc_stride)
    if kind.name == "ner":
        return encode_token_classification(tokenizer, examples, label_map, max_length)
    return encode_classification(tokenizer, examples, max_length, label_map, regression=kind.name == "regression")


# -- the model ------------------------------------------------------------------------------------------------
def head_settings(kind: TaskKind, labels: list[str] | None) -> dict[str, Any]:
    """Config changes that size the head for the data: one output per label, or one score for regression."""
    if kind.name == "regression":
        return {"num_labels": 1, "id2label": None, "problem_type": "regression"}
    if kind.name == "classification":
        return {"id2label": dict(enumerate(labels)), "problem_type": "single_label_classification"}
    if kind.name == "ner":
        return {"id2label": dict(enumerate(labels))}
    return {}


def load_model(kind: TaskKind, checkpoint: str | os.PathLike, labels: list[str] | None,
               pooling: str | None = None) -> BertPreTrainedModel:
    """The checkpoint with the task's head; a new head starts from BERT's init (seed torch before calling).
    `pooling` sets a sequence head's `classifier_pooling` ("cls" or "mean"; None: the checkpoint's).

    A checkpoint already fine-tuned for another number of labels fails the loader's shape check on its classifier;
    that error is raised again here naming both label sets, which is what the user has to reconcile."""
    settings = head_settings(kind, labels) | ({} if pooling is None else {"classifier_pooling": pooling})
    try:
        model = kind.model_class.from_pretrained(checkpoint, **settings)
    except ShapeMismatchError as error:
        if labels is None or error.parameter.partition(".")[0] != "classifier":
            raise
        saved = BertConfig.from_json(resolve(checkpoint) / "config.json")
        raise CheckpointError(
            f"{checkpoint}: its classifier head has {saved.num_labels} labels "
            f"({', '.join(saved.labels().values())}) but the training data has {len(labels)} "
            f"({', '.join(labels)}); fine-tune from a checkpoint without that head, or use data with its labels"
        ) from None
    if pooling is not None and "classifier.weight" not in model.load_report.newly_initialised:
        check_same_pooling(checkpoint, pooling)
    return model


def check_pooling_choice(kind: TaskKind, pooling: str | None) -> None:
    if pooling is not None and pooling not in POOLINGS:
        raise MinibertError(f"{spelled('pooling')} must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling is not None and kind.model_class is not BertForSequenceClassification:
        raise MinibertError(f"{spelled('pooling')} sets a classification or regression head; {kind.name} heads read "
                            "every token")


def check_same_pooling(checkpoint: str | os.PathLike, pooling: str) -> None:
    """A trained classifier reads the vectors of the pooling it was trained with: refuse to change it."""
    saved = BertConfig.from_json(resolve(checkpoint) / "config.json").classifier_pooling
    if saved != pooling:
        raise CheckpointError(f"{checkpoint}: its classifier was trained on {saved} pooling, so "
                              f"{spelled('pooling')} {pooling} would feed it vectors it never saw; fine-tune from a "
                              f"checkpoint without that head, or keep {spelled('pooling')} {saved}")


def add_inference_files(folder: Path, tokenizer: BertTokenizer, kind: TaskKind, labels: list[str] | None,
                        max_length: int, qa_decoding: QADecoding | None = None) -> None:
    """The tokenizer and label_map.json beside a saved model (config.json, with id2label/label2id, and
    model.safetensors): a folder that `minibert predict` and transformers' AutoModelFor... both load. A QA
    folder's label map keeps the decoding its evaluation used, which `predict` then uses by default."""
    tokenizer.save_pretrained(folder)
    write_label_map(folder, kind.name, labels, max_length, qa_decoding)


def qa_decoding_for(kind: TaskKind, examples: Sequence, decoding: QADecoding) -> QADecoding | None:
    """The decoding a QA run evaluates with and saves: `decoding`, with null answers only when some question of
    the data (training or validation) is unanswerable, so that a model trained on SQuAD 1.1-style data never
    answers "". None for the other kinds."""
    if kind.name != "qa":
        return None
    if any(example.is_impossible for example in examples):
        return decoding
    return dataclasses.replace(decoding, null_score_threshold=None)


# -- evaluation with the task's metric ------------------------------------------------------------------------
def metric_function(kind: TaskKind, eval_examples: Sequence, eval_features: Sequence,
                    labels: list[str] | None, qa_decoding: QADecoding | None = None) -> MetricFn:
    """The `metric_fn` the training adapter calls with its predictions and references, in eval-set order."""
    if kind.name in ("classification", "regression"):
        return functools.partial(compute_metrics, kind.metric_kind)
    if kind.name == "ner":
        return functools.partial(_entity_metrics, eval_examples, eval_features, labels)
    return functools.partial(_squad_metrics, eval_examples, eval_features, qa_decoding or QADecoding())


def _entity_metrics(sentences: Sequence[TaggedSentence], features: Sequence[Feature], labels: list[str],
                    predictions: list[list[int]], references: list) -> dict[str, float]:
    """Entity precision/recall/F1 over whole sentences. The adapter predicts a tag at each labelled token (a
    word's first piece); mapped back to words, a word truncation cut off counts as "O", as it would in use."""
    predicted_tags = [word_tags(feature, ids, len(sentence.tokens), labels)
                      for sentence, feature, ids in zip(sentences, features, predictions)]
    return compute_metrics("token_classification", predicted_tags, [sentence.tags for sentence in sentences])


def word_tags(feature: Feature, predicted: Sequence[int], n_words: int, labels: list[str]) -> list[str]:
    """Tags per word from the predictions at the feature's labelled positions (its words' first pieces)."""
    token_predictions = np.full(len(feature.input_ids), -1)
    token_predictions[[i for i, label in enumerate(feature.label) if label != IGNORE_INDEX]] = predicted
    return [labels[i] if i >= 0 else "O" for i in word_predictions(feature.word_ids, token_predictions, n_words, -1)]


def _squad_metrics(examples: Sequence[QAExample], features: Sequence[QAFeature], decoding: QADecoding,
                   predictions: list, references: list) -> dict[str, float]:
    """SQuAD exact match and F1 of the answers decoded from every window's start/end logits (by the decoder
    `predict` uses, with the settings it reads from the saved folder)."""
    start_logits, end_logits = zip(*predictions)
    answers = decode_answers(examples, features, start_logits, end_logits, decoding)
    gold = {example.id: [answer["text"] for answer in example.answers] for example in examples}
    return compute_metrics("qa", {qid: answer.text for qid, answer in answers.items()}, gold)


def training_adapter(kind: TaskKind, metric_fn: MetricFn | None) -> FineTuningTask:
    if kind.name == "qa":
        return QuestionAnsweringTask(metric_fn)
    if kind.name == "ner":
        return TokenClassificationTask(metric_fn)
    return SequenceClassificationTask(metric_fn)


# -- the whole run --------------------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    model_dir: Path  # the model to use: best/ when an earlier evaluation won, else final/
    task: str
    labels: list[str] | None
    main_metric: str | None  # None without a validation set
    metrics: dict[str, float]  # validation metrics of the model in model_dir (empty without a validation set)
    num_train: int  # training examples (QA: questions; the model trains on their windows)
    num_validation: int
    training: TrainResult


def finetune(checkpoint: str | os.PathLike, task: str, train_data: str | os.PathLike,
             output_dir: str | os.PathLike, *, validation_data: str | os.PathLike | None = None,
             validation_fraction: float = 0.1, split_seed: int = 0, data: DataSpec = DataSpec(),
             max_length: int = 128, doc_stride: int | None = None, tokenizer: str | os.PathLike | None = None,
             qa_decoding: QADecoding = QADecoding(), pooling: str | None = None, reinit_layers: int = 0,
             **training: Any) -> FinetuneResult:
    """Fine-tune `checkpoint` (a folder, a hub id, or a model pretrained by minibert) for `task`
    ("classification", "regression", "ner" or "qa") on `train_data`, writing to `output_dir`.

    Validation: `validation_data` if given, else a `validation_fraction` of the training file held out with
    `split_seed` (0 trains on everything and evaluates nothing). QA windows of `max_length` tokens overlap by
    `doc_stride` tokens (default: features.default_doc_stride); answers are decoded with `qa_decoding`, null
    answers ("") included only when the data hold unanswerable questions. `pooling` sets what a new classification
    or regression head reads: "cls" (BERT's pooler on [CLS]) or "mean" (the mean of the last layer's real tokens;
    BertConfig.classifier_pooling); None keeps the checkpoint's. `reinit_layers` re-initialises the top N encoder
    layers before training (`reinit_top_layers`). `training` holds TrainingArguments fields (num_epochs,
    learning_rate, per_device_batch_size, precision, early_stopping_patience, resume, ...); by default the run
    evaluates once per epoch and keeps the best checkpoint by the task's main metric."""
    kind = task_kind(task)
    check_pooling_choice(kind, pooling)
    check_reinit_layers(reinit_layers)
    glue = glue_task(data.glue_task) if data.glue_task is not None else None
    if glue is not None and glue.kind != kind.name:
        raise MinibertError(f"GLUE task {data.glue_task} is a {glue.kind} task, not {kind.name}")
    train_examples, eval_examples = _train_and_validation(kind, train_data, validation_data, validation_fraction,
                                                          split_seed, data)
    check_classes(kind, train_examples, train_data)
    if training.get("early_stopping_patience") is not None and not eval_examples:
        raise DataError(f"{spelled('early_stopping_patience')} needs a validation set ({spelled('validation_data')}"
                        f", or {spelled('validation_fraction')} above 0)")
    main_metric = (glue.metric if glue is not None else kind.main_metric) if eval_examples else None
    args = _training_arguments(output_dir, main_metric, training)
    check_output_dir(args)  # before loading and encoding: a run that cannot start must not cost them
    choose_device(args.device)
    labels = label_list(kind, train_examples, glue)
    decoding = qa_decoding_for(kind, train_examples + eval_examples, qa_decoding)
    # The whole run, final/ and best/ included, holds the folder; under torchrun the loop's lock (rank 0) does.
    single = launched_world_size() == 1
    with output_lock(Path(args.output_dir)) if single else contextlib.nullcontext():
        result = _finetune(kind, checkpoint, tokenizer, labels, train_examples, eval_examples, main_metric, args,
                           training, max_length, doc_stride, decoding, pooling, reinit_layers)
        if launched_rank() == 0:
            write_model_cards(result, checkpoint, describe_data(train_data, validation_data, validation_fraction,
                                                                split_seed, result), args, max_length)
        return result


def _finetune(kind: TaskKind, checkpoint: str | os.PathLike, tokenizer: str | os.PathLike | None,
              labels: list[str] | None, train_examples: list, eval_examples: list, main_metric: str | None,
              args: TrainingArguments, training: dict[str, Any], max_length: int,
              doc_stride: int | None, qa_decoding: QADecoding | None, pooling: str | None,
              reinit_layers: int) -> FinetuneResult:
    tokenizer_ = BertTokenizer.from_pretrained(tokenizer or checkpoint)
    torch.manual_seed(args.seed)  # the new head's initial weights
    model = load_model(kind, checkpoint, labels, pooling)
    reinit_top_layers(model, reinit_layers, args.seed)
    if max_length > model.config.max_position_embeddings:
        raise MinibertError(f"{spelled('max_length')} {max_length} exceeds the model's "
                            f"{model.config.max_position_embeddings} positions")

    doc_stride = doc_stride if doc_stride is not None else default_doc_stride(max_length)
    train_features = encode(kind, tokenizer_, train_examples, labels, max_length, doc_stride)
    eval_features, metric_fn = evaluation_features(kind, tokenizer_, eval_examples, labels, max_length, doc_stride,
                                                   qa_decoding)
    if "eval_every" not in training and eval_features is not None:
        args = dataclasses.replace(args, eval_every=_steps_per_epoch(args, len(train_features)))
    logger.info("fine-tuning for %s on %d examples (%d features), validating on %d", kind.name,
                len(train_examples), len(train_features), len(eval_examples))

    result = train(model, training_adapter(kind, metric_fn), train_features, eval_features, args,
                   functools.partial(collate, pad_id=tokenizer_.pad_id))
    model_dir = _save_models(model, tokenizer_, result, kind, labels, max_length, qa_decoding)
    return FinetuneResult(model_dir=model_dir, task=kind.name, labels=labels, main_metric=main_metric,
                          metrics=_metrics_at(result, main_metric), num_train=len(train_examples),
                          num_validation=len(eval_examples), training=result)


def _train_and_validation(kind: TaskKind, train_data: str | os.PathLike,
                          validation_data: str | os.PathLike | None, validation_fraction: float, split_seed: int,
                          data: DataSpec) -> tuple[list, list]:
    examples = read_task_examples(kind, train_data, data)
    if validation_data is not None:
        return examples, read_task_examples(kind, validation_data, data, default_split="validation")
    if validation_fraction == 0:
        return examples, []
    return split_off_validation(examples, validation_fraction, split_seed)


def _training_arguments(output_dir: str | os.PathLike, main_metric: str | None,
                        training: dict[str, Any]) -> TrainingArguments:
    """TrainingArguments with fine-tuning's default: keep the best checkpoint by the task's main metric."""
    fields = {field.name for field in dataclasses.fields(TrainingArguments)} - {"output_dir"}
    unknown = [name for name in training if name not in fields]
    if unknown:
        raise MinibertError(f"finetune: unexpected keyword argument {unknown[0]!r} (TrainingArguments has no such "
                            "field)")
    return TrainingArguments(output_dir=str(output_dir), **{"keep_best_metric": main_metric, **training})


def _steps_per_epoch(args: TrainingArguments, num_features: int) -> int:
    """Optimizer steps in one pass over the training set (torchrun's WORLD_SIZE processes share each step)."""
    world = launched_world_size()
    return num_features // (args.per_device_batch_size * args.grad_accumulation_steps * world)


def evaluation_features(kind: TaskKind, tokenizer: BertTokenizer, examples: list, labels: list[str] | None,
                        max_length: int, doc_stride: int,
                        qa_decoding: QADecoding | None = None) -> tuple[list | None, MetricFn | None]:
    """Evaluation features sorted by length, so that evaluation batches waste little on padding, and the
    metric function that reads predictions in that order. (None, None) without examples. Validation during
    fine-tuning and `evaluate` (a fine-tuned folder on a test set) both use it."""
    if not examples:
        return None, None
    features = encode(kind, tokenizer, examples, labels, max_length, doc_stride)
    order = longest_first([len(feature.input_ids) for feature in features])
    features = [features[i] for i in order]
    if kind.name != "qa":  # QA windows find their question by id; other features pair with their example
        examples = [examples[i] for i in order]
    return features, metric_function(kind, examples, features, labels, qa_decoding)


def _save_models(model: BertPreTrainedModel, tokenizer: BertTokenizer, result: TrainResult, kind: TaskKind,
                 labels: list[str] | None, max_length: int, qa_decoding: QADecoding | None = None) -> Path:
    """Complete final/ (written by the loop) with tokenizer and label map; write best/ when the best
    evaluation came before the last step. Under torchrun only rank 0 writes."""
    output_dir, is_main = result.output_dir, launched_rank() == 0
    if is_main:
        add_inference_files(output_dir / "final", tokenizer, kind, labels, max_length, qa_decoding)
    if result.best_step is None or result.best_step == result.steps:
        if is_main and (output_dir / "best").is_dir():  # an earlier run's, which this run replaced
            shutil.rmtree(output_dir / "best")
        return output_dir / "final"
    if is_main:
        train_state.load_weights(train_state.find(output_dir, "best"), model)
        model.save_pretrained(output_dir / "best")
        add_inference_files(output_dir / "best", tokenizer, kind, labels, max_length, qa_decoding)
    return output_dir / "best"


def describe_data(train_data: Any, validation_data: Any, validation_fraction: float, split_seed: int,
                  result: FinetuneResult) -> str:
    """The data a run trained and validated on, in words, for its model card."""
    def name(data: Any) -> str:
        return f"`{data}`" if isinstance(data, (str, os.PathLike)) else f"a {type(data).__name__} held in memory"
    trained = f"Trained on {result.num_train} examples from {name(train_data)}"
    if validation_data is not None:
        return f"{trained}; validated on {result.num_validation} examples from {name(validation_data)}."
    if result.num_validation:
        return (f"{trained}, less {result.num_validation} held out for validation ({validation_fraction:.0%}, "
                f"split seed {split_seed}).")
    return f"{trained}; no validation."


def write_model_cards(result: FinetuneResult, checkpoint: str | os.PathLike, data: str,
                      args: TrainingArguments, max_length: int) -> None:
    """README.md in final/ and, when it was written, best/: base model, data, metrics, how it was made; for a
    mean-pooling head, what transformers does with it and the lines that reproduce it there (mean_pooling.py)."""
    run = result.training
    settings = {key: value for key, value in args.to_dict().items() if key in CARD_SETTINGS}
    common = dict(task=result.task, base_model=str(checkpoint), data=data, labels=result.labels, training=settings,
                  machine=machine_facts(run.precision).describe())
    if BertConfig.from_json(run.output_dir / "final" / "config.json").classifier_pooling == "mean":
        common.update(mean_pooling.card_fields(max_length))
    ModelCard(**common, metrics=run.final_metrics, steps=run.steps,
              metrics_note=f"Validation ({result.num_validation} examples) after the last step.").write(
        run.output_dir / "final")
    if result.model_dir.name == "best":
        ModelCard(**common, metrics=result.metrics, steps=run.best_step,
                  metrics_note=f"Validation ({result.num_validation} examples) at step {run.best_step}, the best "
                               f"{result.main_metric} of the run (the weights of that step).").write(result.model_dir)


def _metrics_at(result: TrainResult, main_metric: str | None) -> dict[str, float]:
    """The validation metrics of the saved model: those logged at the best step, else the last evaluation."""
    if result.best_step is None or result.best_step == result.steps:
        return result.final_metrics
    for record in MetricsLog.read(result.output_dir / "metrics.jsonl"):
        if record["step"] == result.best_step and f"eval_{main_metric}" in record:
            return {key[len("eval_"):]: value for key, value in record.items() if key.startswith("eval_")}
    return result.final_metrics
