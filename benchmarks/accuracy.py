"""Does int8 keep the answer? Two budgets, measured on real weights and real text (deterministic: contention
changes how long this takes, not its figures).

1. Embeddings: the real all-MiniLM-L6-v2, mean-pooled, on rotten_tomatoes sentences and IMDB reviews: cosine of
   int8 to float32 >= 0.99 (mean; the worst text is reported too). ONNX Runtime's dynamic int8 of the same
   weights is scored the same way, for comparison.
2. A fine-tuned classifier: MiniLM fine-tuned on rotten_tomatoes (90/10 split, seed 0, the split `python
   scripts/finetune_recipe.py rotten-tomatoes` uses), then held-out accuracy of float32 and int8: within 0.5 points.
   The fine-tuning run is short (plan.classifier_steps steps): the budget is about int8 agreeing with float32,
   not about the best accuracy. ONNX Runtime's int8 of the same classifier (exported with minibert export) too.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from inference import MINILM, REVIEWS_CSV, review_texts
from minibert.speed.onnx_export import export_onnx
from minibert.speed.fused_layers import prepare_for_inference
from minibert.inference import embed, length_sorted_batches
from minibert.model import BertForSequenceClassification, BertModel
from minibert.finetuning.features import collate, encode_classification
from minibert.finetuning.run import DataSpec, finetune, read_task_examples, split_off_validation
from minibert.finetuning.kinds import task_kind
from minibert.tokenizer import BertTokenizer

COSINE_BUDGET, ACCURACY_BUDGET_POINTS = 0.99, 0.5


def section(plan, report_line) -> list[dict]:
    if not plan.accuracy:
        return []
    return [report_line(embedding_budget(plan)), report_line(classifier_budget(plan))]


def embedding_budget(plan) -> dict:
    start = time.perf_counter()
    model, tokenizer = BertModel.from_pretrained(MINILM), BertTokenizer.from_pretrained(MINILM)
    int8 = prepare_for_inference(copy.deepcopy(model), int8=True)
    texts = {"rotten_tomatoes": review_texts("rotten_tomatoes")[:plan.accuracy_texts],
             "imdb": review_texts("imdb")[:plan.accuracy_texts // 4]}
    ort_int8 = _ort_int8_encoder(model)
    result = {"section": "accuracy", "name": "int8 embeddings, MiniLM real weights", "budget": COSINE_BUDGET,
              "texts": {k: len(v) for k, v in texts.items()}, "cosine": {}}
    for source, items in texts.items():
        reference = embed(model, items, tokenizer=tokenizer, normalize=False, max_length=256)
        for name, vectors in (("minibert[int8]", embed(int8, items, tokenizer=tokenizer, normalize=False, max_length=256)),
                              ("ort[int8]", _ort_embed(ort_int8, tokenizer, items))):
            cosine = F.cosine_similarity(vectors, reference)
            result["cosine"][f"{name} {source}"] = {"mean": float(cosine.mean()), "min": float(cosine.min())}
    result["met"] = all(v["mean"] >= COSINE_BUDGET for k, v in result["cosine"].items() if k.startswith("minibert"))
    result["seconds"] = time.perf_counter() - start
    return result


def classifier_budget(plan) -> dict:
    start = time.perf_counter()
    spec = DataSpec(where={"source": "rotten_tomatoes"})
    with tempfile.TemporaryDirectory() as folder:
        run = finetune(MINILM, "classification", REVIEWS_CSV, folder, data=spec, validation_fraction=0.1,
                       split_seed=0, max_length=64, max_steps=plan.classifier_steps, per_device_batch_size=32,
                       learning_rate=1e-4, warmup_ratio=0.1, progress_bar=False, plot=False, eval_every=0,
                       keep_best_metric=None)
        model = BertForSequenceClassification.from_pretrained(run.model_dir)
        tokenizer = BertTokenizer.from_pretrained(run.model_dir)
        examples = read_task_examples(task_kind("classification"), REVIEWS_CSV, spec)
        held_out = split_off_validation(examples, 0.1, 0)[1]
        label_map = {label: i for i, label in enumerate(run.labels)}
        features = encode_classification(tokenizer, held_out, 64, label_map)
        accuracy = {"minibert": _accuracy(model, features, tokenizer.pad_id),
                    "minibert[int8]": _accuracy(prepare_for_inference(copy.deepcopy(model), int8=True), features,
                                                tokenizer.pad_id)}
        ort_path = Path(folder) / "classifier.onnx"
        export_onnx(model, ort_path)
        accuracy["ort[int8]"] = _ort_accuracy(_quantize(ort_path, model.config), features, tokenizer.pad_id)
    drop = 100 * (accuracy["minibert"] - accuracy["minibert[int8]"])
    return {"section": "accuracy", "name": "int8 fine-tuned rotten_tomatoes classifier (MiniLM)",
            "budget_points": ACCURACY_BUDGET_POINTS, "steps": plan.classifier_steps, "held_out": len(features),
            "accuracy": accuracy, "int8_drop_points": drop, "met": abs(drop) <= ACCURACY_BUDGET_POINTS,
            "seconds": time.perf_counter() - start}


def _accuracy(model, features, pad_id: int) -> float:
    correct = 0
    with torch.inference_mode():
        for index in length_sorted_batches([len(f.input_ids) for f in features], 64):
            batch = collate([features[i] for i in index], pad_id)
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(features)


# ----------------------------------------------------------------------------------------------------------------
# ONNX Runtime's dynamic int8 (per-tensor activations) of the same weights, for comparison.
# ----------------------------------------------------------------------------------------------------------------
def _quantize(path: Path, config):
    """The exported graph fused by ORT's BERT optimizer, then dynamic int8, as a session."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    fused = path.with_suffix(".fused.onnx")
    optimized = optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size)
    optimized.save_model_to_file(str(fused))
    int8 = path.with_suffix(".int8.onnx")
    quantize_dynamic(str(fused), str(int8), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"])


def _ort_int8_encoder(model):
    folder = Path(tempfile.mkdtemp(prefix="minibert-acc-"))
    export_onnx(model, folder / "encoder.onnx")
    return _quantize(folder / "encoder.onnx", model.config)


def _ort_embed(session, tokenizer, texts: list[str]) -> torch.Tensor:
    out = torch.empty(len(texts), 384)
    lengths = [len(ids) for ids in tokenizer.encode_batch_ids(texts)]
    for index in length_sorted_batches(lengths, 32):
        batch = tokenizer([texts[i] for i in index], max_length=256)
        hidden = torch.from_numpy(session.run(["last_hidden_state"], {k: v.numpy() for k, v in batch.items()})[0])
        weights = batch["attention_mask"].unsqueeze(-1).float()
        out[index] = (hidden * weights).sum(1) / weights.sum(1)
    return out


def _ort_accuracy(session, features, pad_id: int) -> float:
    correct = 0
    for index in length_sorted_batches([len(f.input_ids) for f in features], 64):
        batch = collate([features[i] for i in index], pad_id)
        labels = batch.pop("labels")
        logits = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
        correct += int((torch.from_numpy(logits).argmax(-1) == labels).sum())
    return correct / len(features)
