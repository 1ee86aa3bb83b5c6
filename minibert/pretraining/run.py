"""Pretraining from raw text, end to end: corpus -> prepared shards -> BERT -> `train()` -> a checkpoint folder
that minibert and transformers both load. `minibert pretrain` and a notebook call the same `pretrain()`:

    from minibert.pretraining import PretrainingOptions
    from minibert.pretraining.run import pretrain
    from minibert.training import TrainingArguments

    result = pretrain(TrainingArguments("runs/tiny", max_steps=1000, learning_rate=5e-4, warmup_steps=100),
                      tokenizer="path/to/vocab-folder", corpus=["wiki.json"], model="tiny",
                      options=PretrainingOptions(max_seq_length=128, dupe_factor=1))

Layout of `output_dir` after a run:

    data/source.json   what the data was made from (corpus files, split, options, vocabulary); written last, so a
                       later call with the same inputs reuses data/train and data/eval instead of redoing them
                       (new data is built beside the old and moved in when complete)
    data/train/        the training examples (see minibert.pretraining.shards)
    data/eval/         the held-out examples: documents the training set never contains
    checkpoints/, metrics.jsonl, curves.png   written by the training loop
    final/             config.json, model.safetensors and the tokenizer: a complete Hugging Face checkpoint (with
                       objective "electra": the discriminator, a plain BERT encoder, its head in rtd_head.safetensors,
                       and the generator, a BertForMaskedLM with the tokenizer, in final/generator/)
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from minibert.config import PRESETS, BertConfig
from minibert.pretraining.corpus import corpus_files, iter_documents, warnings_if_successful
from minibert.pretraining.electra import (GENERATOR, Electra, ElectraForPreTraining, ElectraTask, build_electra,
                                          electra_settings, initialise_electra)
from minibert.pretraining.examples import PretrainingOptions
from minibert.pretraining.initialisation import INITS, InitScheme, init_scheme, initialise
from minibert.pretraining.shards import (PretrainingDataset, build_beside, collate_pretraining, move_prepared,
                                         read_meta, vocab_sha256, write_pretraining_data)
from minibert.errors import ConfigError, DataError, TrainingError, spelled
from minibert.plumbing.hub import resolve
from minibert.plumbing.atomic_files import atomic_write_text, remove_stale_temps
from minibert.model import BertForMaskedLM, BertForPreTraining
from minibert.plumbing.output_lock import output_lock
from minibert.plumbing.output_paths import check_no_links
from minibert.tokenizer import BertTokenizer
from minibert.training.args import TrainingArguments
from minibert.training.batches import eval_loader
from minibert.training.loop import OptimizerStep, TrainResult, train
from minibert.training.optim import build_optimizer, linear_warmup_decay
from minibert.training.processes import Processes, end_processes, on_main, start_processes
from minibert.training.precision import autocast as precision_autocast, resolve_precision
from minibert.pretraining.objective import PretrainingTask
from minibert.pretraining.wordpiece import Reread, train_wordpiece
from minibert.training import train_state
from minibert.training.run_folder import RUN_OUTPUTS, check_output_dir, check_spares_inputs, hold_output_dir
from minibert.training.model_card import CARD_SETTINGS, ModelCard
from minibert.plumbing.machine import machine_facts
from minibert.training.task import Task, to_device

logger = logging.getLogger("minibert")

PathLike = str | os.PathLike
SOURCE = "source.json"
PREPARED_ENTRIES = ("train", "eval", SOURCE)  # what prepare_data writes in its folder


@dataclass
class PreparedData:
    """Folders of prepared examples: training, and held-out (None when there is no evaluation set)."""
    train: Path
    eval: Path | None


# -- inputs -----------------------------------------------------------------------------------------------------
def load_tokenizer(tokenizer: PathLike | BertTokenizer) -> BertTokenizer:
    """A tokenizer object, or one loaded from a folder (tokenizer.json or vocab.txt), a vocab.txt or a hub id."""
    return tokenizer if isinstance(tokenizer, BertTokenizer) else BertTokenizer.from_pretrained(tokenizer)


def model_config(model: PathLike | BertConfig, vocab_size: int) -> BertConfig:
    """The config of a model trained from scratch: a preset name from `PRESETS` (sized to the tokenizer's
    vocabulary, everything else BERT's defaults), a config.json file, or a BertConfig as it is."""
    if isinstance(model, BertConfig):
        return model
    if str(model) in PRESETS:
        return BertConfig(vocab_size=vocab_size, **PRESETS[str(model)])
    if not Path(model).is_file():
        raise ConfigError(f"{model}: neither a preset ({', '.join(PRESETS)}) nor a config.json file")
    return BertConfig.from_json(model)


def checkpoint_config(init_from: PathLike) -> BertConfig:
    """The config of a checkpoint to continue pretraining from, read without loading its weights."""
    return BertConfig.from_json(resolve(init_from) / "config.json")


def check_compatible(config: BertConfig, tokenizer: BertTokenizer, max_seq_length: int) -> None:
    """The embedding tables must fit the data: one row per vocabulary id, one position per token."""
    if tokenizer.vocab_size != config.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model config's vocab_size is "
                          f"{config.vocab_size}; use the tokenizer the model was made for, or set vocab_size to "
                          f"{tokenizer.vocab_size}")
    if max_seq_length > config.max_position_embeddings:
        raise ConfigError(f"max_seq_length {max_seq_length} is above the model's max_position_embeddings "
                          f"({config.max_position_embeddings}); lower --max-seq-length")


# -- the held-out split -------------------------------------------------------------------------------------------
def is_held_out(document: Sequence[str], fraction: float, seed: int) -> bool:
    """Whether a document belongs to the held-out set: a seeded hash of its text, not its position, decides.

    So the split needs no second pass and no memory, is the same whatever the file order, and puts every copy of
    a duplicated document on the same side, so held-out text never appears in training."""
    digest = hashlib.blake2b("\n".join(document).encode("utf-8"), digest_size=8,
                             key=str(seed).encode("ascii")).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 < fraction


def split_documents(documents: Iterable[Sequence[str]], held_out: bool, fraction: float,
                    seed: int) -> Iterator[Sequence[str]]:
    """The documents on one side of the split; an empty side is an error that says how to fix it."""
    kept = 0
    for document in documents:
        if is_held_out(document, fraction, seed) == held_out:
            kept += 1
            yield document
    if kept == 0:
        side = "held-out" if held_out else "training"
        raise DataError(f"the {side} split of the corpus has no documents (eval fraction {fraction}); "
                        "change --eval-fraction or pass --eval-corpus")


def eval_options(options: PretrainingOptions) -> PretrainingOptions:
    """The held-out set is masked once, at preparation, and not duplicated: every evaluation then scores the same
    predictions, and copies with other masks would cost evaluation time without measuring anything new."""
    return dataclasses.replace(options, dupe_factor=1, dynamic_masking=False, seed=options.seed + 1)


def learn_tokenizer(corpus: Sequence[PathLike], vocab_size: int, folder: PathLike, *, corpus_format: str = "auto",
                    text_field: str = "text", eval_fraction: float = 0.01,
                    seed: int = PretrainingOptions.seed) -> BertTokenizer:
    """A WordPiece vocabulary of `vocab_size` learnt from the training side of the held-out split (the documents
    `prepare_data` trains on with the same `eval_fraction` and data `seed`), so held-out text stays unseen; saved
    to `folder`, and reused from there when it was learnt from the same files with the same settings."""
    folder = Path(folder)
    check_no_links(folder.parent, (folder.name,))
    source = {"corpus": [{"path": str(path.resolve()), "size": path.stat().st_size,
                          "mtime_ns": path.stat().st_mtime_ns} for path in corpus_files(corpus)],
              "format": corpus_format, "text_field": text_field, "vocab_size": vocab_size,
              "eval_fraction": eval_fraction, "seed": seed}
    record = folder / "learnt_from.json"
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")) == source:
        return BertTokenizer.from_pretrained(folder)
    with warnings_if_successful():  # an empty file's warning would only repeat the error an empty corpus raises
        def training_documents():
            documents = iter_documents(corpus, format=corpus_format, text_field=text_field)
            return split_documents(documents, False, eval_fraction, seed) if eval_fraction else documents
        tokenizer = train_wordpiece(Reread(training_documents), vocab_size)
    tokenizer.save_pretrained(folder)
    atomic_write_text(record, json.dumps(source, indent=2) + "\n")
    return tokenizer


# -- preparing data -----------------------------------------------------------------------------------------------
def describe_source(corpus: Sequence[PathLike], corpus_format: str, text_field: str,
                    eval_corpus: Sequence[PathLike] | None, eval_fraction: float, options: PretrainingOptions,
                    tokenizer: BertTokenizer) -> dict:
    """Everything the prepared data depends on; equal descriptions mean the data can be reused. Files are known
    by path, size and modification time (reading them to hash would cost as much as preparing)."""
    def files(paths: Sequence[PathLike]) -> list[dict]:
        return [{"path": str(path.resolve()), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
                for path in corpus_files(paths)]  # the files iter_documents reads; raises on a missing one

    return {"corpus": files(corpus), "format": corpus_format, "text_field": text_field,
            "eval_corpus": files(eval_corpus) if eval_corpus else None,
            "eval_fraction": 0.0 if eval_corpus else eval_fraction,
            "options": dataclasses.asdict(options), "vocab_sha256": vocab_sha256(tokenizer)}


def prepare_data(corpus: Sequence[PathLike], tokenizer: BertTokenizer, data_dir: PathLike,
                 options: PretrainingOptions = PretrainingOptions(), *, corpus_format: str = "auto",
                 text_field: str = "text", eval_corpus: Sequence[PathLike] | None = None,
                 eval_fraction: float = 0.01, keep_existing: bool = False) -> PreparedData:
    """Prepare `data_dir/train` and `data_dir/eval` from a corpus, or reuse them if `data_dir/source.json` says
    they were made from the same files with the same options and vocabulary.

    The held-out set is `eval_corpus` when given (as it is: the corpus is not searched for its documents), else
    the `eval_fraction` of the corpus's documents that `is_held_out` picks; `eval_fraction=0` and no eval corpus
    means no held-out set. `keep_existing` (a resumed run) refuses to replace finished data made from other inputs.

    New data is built beside the old (which stays whole, and in use, until the new data is complete), then moved
    in; data_dir is locked meanwhile (one preparation at a time)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise DataError(f"{spelled('eval_fraction')} {eval_fraction} is not in [0, 1)")
    data_dir = Path(data_dir)
    source = describe_source(corpus, corpus_format, text_field, eval_corpus, eval_fraction, options, tokenizer)
    has_eval = bool(eval_corpus) or eval_fraction > 0
    prepared = PreparedData(data_dir / "train", data_dir / "eval" if has_eval else None)
    check_no_links(data_dir, PREPARED_ENTRIES)
    with output_lock(data_dir), ExitStack() as cleanup:
        for name in ("train", "eval"):  # left by a preparation that was killed
            for path in remove_stale_temps(data_dir, name):
                logger.info("removed %s, left by a killed preparation", path)
        if _finished(data_dir, source, prepared):
            logger.info("reusing the data prepared in %s", data_dir)
            return prepared
        if keep_existing and (data_dir / SOURCE).is_file():
            raise DataError(f"{data_dir}: the corpus, data options or tokenizer differ from those this data was "
                            f"prepared from ({SOURCE}); a resumed run must read the same data")
        # Built beside the earlier data, which stays whole and in use until the new data is complete.
        built = {name: build_beside(folder, cleanup)
                 for name, folder in (("train", prepared.train), ("eval", prepared.eval)) if folder is not None}
        read = functools.partial(iter_documents, format=corpus_format, text_field=text_field)
        with warnings_if_successful():
            _prepare_sets(read, corpus, eval_corpus, eval_fraction, tokenizer, built, options)
        (data_dir / SOURCE).unlink(missing_ok=True)  # from here the folder reads as unfinished, for a moment
        move_prepared(built["train"], prepared.train)
        if prepared.eval is not None:
            move_prepared(built["eval"], prepared.eval)
        atomic_write_text(data_dir / SOURCE, json.dumps(source, indent=2) + "\n")  # the commit point
    return prepared


def _prepare_sets(read, corpus: Sequence[PathLike], eval_corpus: Sequence[PathLike] | None, eval_fraction: float,
                  tokenizer: BertTokenizer, built: dict[str, Path], options: PretrainingOptions) -> None:
    """Write the training set, and the held-out set when `built` has a folder for it: the eval corpus, else the
    eval_fraction of the corpus's documents."""
    split = 0.0 if eval_corpus else eval_fraction
    train_documents = split_documents(read(corpus), False, split, options.seed) if split else read(corpus)
    _prepare_one(train_documents, tokenizer, built["train"], options)
    if "eval" in built:
        eval_documents = read(eval_corpus) if eval_corpus else split_documents(read(corpus), True, split,
                                                                                options.seed)
        _prepare_one(eval_documents, tokenizer, built["eval"], eval_options(options))


def _finished(data_dir: Path, source: dict, prepared: PreparedData) -> bool:
    path = data_dir / SOURCE
    try:
        if json.loads(path.read_text(encoding="utf-8")) != source:
            return False
    except (OSError, ValueError):  # missing, or damaged: prepared again
        return False
    folders = [prepared.train] + ([prepared.eval] if prepared.eval else [])
    return all((folder / "meta.json").is_file() for folder in folders)


def _prepare_one(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer, folder: Path,
                 options: PretrainingOptions) -> None:
    started = time.perf_counter()
    meta = write_pretraining_data(documents, tokenizer, folder, options)
    counts = meta["counts"]
    logger.info("prepared %s: %d documents -> %d examples, %d tokens in %.1f s", folder, counts["documents"],
                counts["examples"], counts["tokens"], time.perf_counter() - started)


def open_prepared(data_dir: PathLike) -> PreparedData:
    """A folder `prepare_data` finished (train/, and eval/ when something was held out), or a single prepared
    folder (no held-out set)."""
    data_dir = Path(data_dir)
    if (data_dir / "meta.json").is_file():
        return PreparedData(data_dir, None)
    if not (data_dir / SOURCE).is_file():
        raise DataError(f"{data_dir}: no prepared data here (no meta.json, no {SOURCE}), or its preparation did not "
                        "finish; run `minibert prepare-pretraining`")
    try:
        source = json.loads((data_dir / SOURCE).read_text(encoding="utf-8"))
        has_eval = bool(source["eval_corpus"]) or source["eval_fraction"] > 0
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{data_dir / SOURCE}: damaged ({type(e).__name__}: {e}); prepare the data again") from None
    return PreparedData(data_dir / "train", data_dir / "eval" if has_eval else None)


# -- the model ----------------------------------------------------------------------------------------------------
def build_model(config: BertConfig, nsp: bool, init_from: PathLike | None, seed: int):
    """BertForPreTraining (MLM + NSP), or BertForMaskedLM when the data has no NSP labels: it has no pooler or NSP
    head to leave without gradients (which DDP refuses). From a checkpoint, heads it lacks are newly initialised."""
    cls = BertForPreTraining if nsp else BertForMaskedLM
    torch.manual_seed(seed)  # the initial weights, and so the run, follow from the seed
    return cls.from_pretrained(init_from) if init_from is not None else cls(config)


# -- a wall-clock budget ------------------------------------------------------------------------------------------
def steps_for_budget(minutes: float, model: torch.nn.Module, task: Task, train_dataset: Dataset,
                     eval_dataset: Dataset | None, args: TrainingArguments, collate_fn, device: torch.device,
                     probe_steps: int = 3) -> int:
    """How many optimizer steps, with their evaluations, fit in `minutes`, from timing a few real steps on a copy
    of the model (after one untimed warm-up step) and one evaluation.

    The loop runs a fixed number of steps, and its learning rate decays to zero at the last one, so a budget is
    turned into `max_steps` before training rather than checked while training. Under torchrun every rank uses
    rank 0's figure (ranks must agree on the number of steps)."""
    probe = copy.deepcopy(model).to(device).train()
    optimizer = build_optimizer(probe, args.learning_rate, args.weight_decay)
    # The loop's own step, on rank 0 alone (world 1: no collectives), with a scaler as the run would have one.
    step = OptimizerStep(probe, task, optimizer, linear_warmup_decay(optimizer, 0, probe_steps + 1),
                         torch.amp.GradScaler(device.type, enabled=args.precision == "fp16"),
                         precision_autocast(args.precision, device), device, 1, args.max_grad_norm)
    loader = iter(DataLoader(train_dataset, batch_size=args.per_device_batch_size, shuffle=True,
                             collate_fn=collate_fn, generator=torch.Generator().manual_seed(args.seed)))

    def one_step() -> None:
        step.backward([to_device(next(loader), device) for _ in range(args.grad_accumulation_steps)])
        step.clip()
        step.update()

    one_step()  # warm-up: first-call allocations and kernel selection
    started = time.perf_counter()
    for _ in range(probe_steps):
        one_step()
    step_time = (time.perf_counter() - started) / probe_steps
    eval_time = 0.0
    if eval_dataset is not None:
        started = time.perf_counter()
        evaluation = eval_loader(eval_dataset, collate_fn, args.per_device_batch_size, args.seed, 0, False)
        with step.autocast:
            step.task.evaluate(probe, evaluation)
        eval_time = time.perf_counter() - started
    per_step = step_time + (eval_time / args.eval_every if args.eval_every and eval_dataset is not None else 0.0)
    steps = max(1, int((minutes * 60 - eval_time) / per_step))  # eval_time: the evaluation after the last step
    logger.info("time budget %.1f min: %.3f s per step, %.1f s per evaluation -> %d steps", minutes, step_time,
                eval_time, steps)
    return steps


# -- the whole run ------------------------------------------------------------------------------------------------
def pretrain(args: TrainingArguments, tokenizer: PathLike | BertTokenizer | None = None, *,
             corpus: PathLike | Sequence[PathLike] | None = None, corpus_format: str = "auto",
             text_field: str = "text", eval_corpus: PathLike | Sequence[PathLike] | None = None,
             eval_fraction: float = 0.01, data_dir: PathLike | None = None, model: PathLike | BertConfig | None = None,
             init_from: PathLike | None = None, options: PretrainingOptions | None = None,
             max_minutes: float | None = None, init: str | InitScheme = "bert",
             objective: str | Electra = "mlm") -> TrainResult:
    """Pretrain BERT (MLM + NSP, or MLM only when `options.nsp` is False) and write `args.output_dir/final`.
    `objective` "electra" (or an Electra, to change its settings) pretrains by replaced-token detection instead
    (minibert.pretraining.electra) on MLM-only data (options default to nsp=False), and final/ holds the
    discriminator as a plain BERT encoder, the generator in final/generator/.

    Data: `corpus` (files or folders of `corpus_format`, see minibert.pretraining.corpus) is prepared with `options` into
    args.output_dir/data, once; or `data_dir` names data prepared earlier (by `prepare_data`). Held out: the
    `eval_corpus`, else `eval_fraction` of the corpus's documents. Model: `model` (a preset name, a config.json
    or a BertConfig) from scratch, or `init_from` a checkpoint to continue pretraining. `tokenizer` defaults to
    the checkpoint's. `max_minutes` sets max_steps (capped by args.max_steps) so that training and evaluation
    take about that long (see `steps_for_budget`). `init` is how a model from scratch starts: "bert",
    "local-attention" or an InitScheme (see minibert.pretraining.initialisation).

    Every check that does not need the corpus's content (an empty corpus shows only when read) runs before any
    data is prepared. Under torchrun rank 0 prepares the data while the other ranks wait. Returns the loop's
    TrainResult.
    """
    corpus, eval_corpus = _as_list(corpus), _as_list(eval_corpus)
    _check_choices(args, tokenizer, corpus, data_dir, model, init_from, options, max_minutes, init)
    electra = electra_settings(objective)
    # Before preparing data: a run that cannot start must not cost a preparation.
    _check_run_folder(args, [*corpus, *eval_corpus, data_dir, tokenizer, model, init_from], bool(corpus), electra)
    tokenizer = load_tokenizer(tokenizer if tokenizer is not None else init_from)
    config = checkpoint_config(init_from) if init_from is not None else model_config(model, tokenizer.vocab_size)
    if corpus:
        options = options or PretrainingOptions(nsp=electra is None)
    else:
        options = PretrainingOptions(**read_meta(open_prepared(data_dir).train)["options"])
    check_compatible(config, tokenizer, options.max_seq_length)
    if electra is not None and options.nsp:
        raise TrainingError(f"{spelled('objective')} electra has no next-sentence prediction, but the data is made "
                            "of NSP pairs; use MLM-only data (nsp=False; the --no-nsp flag)")

    def data() -> PreparedData:
        if not corpus:
            return open_prepared(data_dir)
        return prepare_data(corpus, tokenizer, Path(args.output_dir) / "data", options, corpus_format=corpus_format,
                            text_field=text_field, eval_corpus=eval_corpus, eval_fraction=eval_fraction,
                            keep_existing=args.resume)

    processes = start_processes(args.device)
    try:
        with hold_output_dir(Path(args.output_dir), processes, check=lambda: check_output_dir(args)):
            result = _prepare_and_train(args, processes, data, tokenizer, config, options, init_from, max_minutes,
                                        init, electra)
            if processes.is_main:
                write_model_card(result, args, corpus, data_dir, init_from, electra is not None)
    except BaseException:
        end_processes(processes, failed=True)
        raise
    end_processes(processes)
    return result


def write_model_card(result: TrainResult, args: TrainingArguments, corpus: list, data_dir: PathLike | None,
                     init_from: PathLike | None, electra: bool = False) -> None:
    """final/README.md: where the model came from, its data, its held-out metrics and how it was made (for ELECTRA,
    final/ is the discriminator; its metrics are the generator's masked LM and the replaced-token detection)."""
    prepared = open_prepared(data_dir if data_dir is not None else result.output_dir / "data")
    counts = read_meta(prepared.train)["counts"]
    source = (", ".join(f"`{path}`" for path in corpus) if corpus else f"the data prepared in `{data_dir}`")
    data = (f"{source}: {counts['documents']:,} documents, {counts['examples']:,} training examples, "
            f"{counts['tokens']:,} tokens" + ("; documents held out for evaluation." if prepared.eval else "."))
    settings = {key: value for key, value in args.to_dict().items() if key in CARD_SETTINGS}
    note = ("Held-out metrics after the last step: the generator's masked LM (mlm_*) and the discriminator's "
            "replaced-token detection (rtd_*)." if electra else "Held-out masked-LM metrics after the last step.")
    ModelCard(task="pretraining", base_model=str(init_from) if init_from is not None else None, data=data,
              metrics=result.final_metrics, metrics_note=note, training=settings, steps=result.steps,
              machine=machine_facts(result.precision).describe()).write(result.output_dir / "final")


def _prepare_and_train(args: TrainingArguments, processes: Processes, data, tokenizer: BertTokenizer,
                       config: BertConfig, options: PretrainingOptions, init_from: PathLike | None,
                       max_minutes: float | None, init: str | InitScheme, electra: Electra | None) -> TrainResult:
    prepared = on_main(processes, data)
    train_dataset = PretrainingDataset(prepared.train, tokenizer=tokenizer)
    eval_dataset = PretrainingDataset(prepared.eval, tokenizer=tokenizer) if prepared.eval else None
    collate = functools.partial(collate_pretraining, pad_id=tokenizer.pad_id)
    if electra is None:
        bert, task = build_model(config, options.nsp, init_from, args.seed), PretrainingTask(tokenizer.mask_id)
    else:
        bert, task = build_electra(config, electra, init_from, args.seed), ElectraTask(tokenizer.mask_id)
    if init_from is None:  # the weights drawn by the build's seed, then the scheme's (same generator)
        scheme = init_scheme(init)
        counts = train_dataset.token_counts() if scheme.unigram_bias else None
        cooccurrence = train_dataset.cooccurrence_counts() if scheme.distributional_embeddings else None
        (initialise if electra is None else initialise_electra)(bert, scheme, counts, cooccurrence)
    if max_minutes is not None:
        # The budget's timing needs the precision the run will use: resolve "auto" once, here.
        args = dataclasses.replace(args, precision=resolve_precision(
            args, bert.to(processes.device), task, train_dataset, collate, processes.device))
        budget = on_main(processes, lambda: steps_for_budget(
            max_minutes, bert, task, train_dataset, eval_dataset, args, collate, processes.device))
        args = dataclasses.replace(args, max_steps=min(budget, args.max_steps or budget))
    result = train(bert, task, train_dataset, eval_dataset, args, collate)
    final = result.output_dir / "final"

    def save_tokenizer() -> None:  # final/ (and an ELECTRA generator's folder) then loads on its own, in any library
        for folder in [final] + ([final / GENERATOR] if electra is not None else []):
            tokenizer.save_pretrained(folder)

    on_main(processes, save_tokenizer)
    return result


def _check_run_folder(args: TrainingArguments, inputs: list, prepares: bool, electra: Electra | None) -> None:
    """The output folder can be used (check_output_dir), overwriting it spares every input, and a resumed run
    trains its checkpoint's objective."""
    check_output_dir(args)
    check_spares_inputs(args, inputs, writes=(*RUN_OUTPUTS, "curves.png", *(("data",) if prepares else ())))
    if args.resume:
        check_resumed_objective(Path(args.output_dir), "mlm" if electra is None else "electra")


def check_resumed_objective(output_dir: Path, objective: str) -> None:
    """A resumed run trains what its checkpoint trained: another objective is refused before any data is prepared
    (a checkpoint that does not record its model's class is left to the loop's own checks)."""
    folder = train_state.find(output_dir)
    saved = train_state.read_trainer(folder).get("model_class") if folder is not None else None
    trained = {ElectraForPreTraining.__name__: "electra", BertForPreTraining.__name__: "mlm",
               BertForMaskedLM.__name__: "mlm"}.get(saved)
    if trained is not None and trained != objective:
        raise TrainingError(f"{folder}: cannot resume with {spelled('objective')} {objective}, the checkpoint was "
                            f"trained with {trained}; resume with {spelled('objective')} {trained}, or start a new "
                            f"run ({spelled('overwrite_output_dir')}, or another {spelled('output_dir')})")


def _as_list(paths: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if paths is None:
        return []
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _check_choices(args: TrainingArguments, tokenizer, corpus: list, data_dir: PathLike | None, model, init_from,
                   options: PretrainingOptions | None, max_minutes: float | None, init) -> None:
    """Arguments that exclude or need each other."""
    if tokenizer is None and init_from is None:
        raise TrainingError("give a tokenizer (a model from scratch has none of its own)")
    if bool(corpus) == (data_dir is not None):
        raise TrainingError("give a corpus to prepare, or a prepared data folder (one of the two)")
    if (model is None) == (init_from is None):
        raise TrainingError("give a model to train from scratch (a preset or a config) or a checkpoint to "
                            "continue from (one of the two)")
    if data_dir is not None and options is not None:
        raise TrainingError("data options are fixed when data is prepared; they cannot change for a prepared "
                            "data folder")
    if init_scheme(init) != INITS["bert"] and init_from is not None:
        raise TrainingError(f"init {init!r} is for a model from scratch; a checkpoint (init_from) has its weights")
    if max_minutes is not None and not max_minutes > 0:
        raise TrainingError(f"{spelled('max_minutes')} must be positive, got {max_minutes}")
    if max_minutes is not None and args.resume:
        raise TrainingError(f"{spelled('max_minutes')} cannot resume a run: its number of steps comes from a timing "
                            f"that would differ; give {spelled('max_steps')} instead")
