"""A mean-pooling sequence head, read by transformers.

minibert's BertForSequenceClassification can read the mean of the last layer's real tokens instead of [CLS]
(`classifier_pooling: "mean"` in config.json). transformers' BertForSequenceClassification has no such option: it
always feeds the classifier `tanh(pooler.dense(h[CLS]))`. Loaded into it (transformers 5.25 checked), a
mean-pooling folder (which has no pooler weights) gets a pooler newly drawn at random, with a warning (5.x: a
LOAD REPORT listing `bert.pooler.dense.weight` and `.bias` as MISSING, "newly initialized ... Consider training";
4.x: "Some weights ... were not initialized ... and are newly initialized"), and its predictions are those of that
random pooler on [CLS], nearly the same for every input: not the fine-tuned model's. `classifier_pooling` in
config.json becomes a config attribute that BertForSequenceClassification never reads.

So the folder says it where a user looks first, in its model card (README.md, training/model_card.py), with the
few lines of plain transformers that do reproduce minibert's logits (TRANSFORMERS_RECIPE, executed by the tests
against minibert's own logits): the encoder through `AutoModel`, the masked mean, and the saved classifier's
weight and bias.
"""

from __future__ import annotations

# Runs as written with `folder` (this folder) and `texts` (a list of strings) defined; `max_length` is filled in.
TRANSFORMERS_RECIPE = '''\
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(folder)
encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False)  # the encoder alone (no pooler: none was trained)
classifier = load_file(f"{folder}/model.safetensors")  # the head's weights, saved under transformers' names
batch = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="pt")
with torch.no_grad():
    hidden = encoder(**batch).last_hidden_state  # (B, T, D)
mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1): 1 on real tokens, 0 on padding
pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, D): the mean of the real tokens
logits = pooled @ classifier["classifier.weight"].T + classifier["classifier.bias"]  # (B, C)
'''


def transformers_recipe(max_length: int) -> str:
    return TRANSFORMERS_RECIPE.replace("{max_length}", str(max_length))


def card_fields(max_length: int) -> dict[str, str]:
    """What a mean-pooling folder's model card (README.md, training/model_card.py) says beyond the usual: a note on
    what minibert and transformers each do with the head, and the transformers lines that reproduce it."""
    note = ("**The classifier reads the mean of the last layer's real tokens** (`\"classifier_pooling\": \"mean\"` in "
            "config.json), not BERT's pooled `[CLS]`; the folder has no pooler weights. minibert reads it as trained "
            "(`minibert predict`, `BertForSequenceClassification.from_pretrained`). transformers' "
            "`BertForSequenceClassification` does not: it has no mean-pooling option, draws a random pooler (its load "
            "report lists `bert.pooler.dense.*` as MISSING, newly initialized) and puts it on `[CLS]`, so its "
            "predictions are not this model's. The lines under Use reproduce minibert's logits in transformers (a test "
            "holds them to 1e-5).")
    usage = ("# AutoModel reports classifier.weight and classifier.bias as UNEXPECTED: expected, the lines below read "
             "them themselves.\n" f'folder, texts = "path/to/this/folder", ["a first text", "a second one"]\n'
             + transformers_recipe(max_length))
    return {"note": note, "transformers_use": usage}
