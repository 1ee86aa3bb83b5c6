"""Speed: the same model, run faster. Nothing here is needed to read or train BERT; model.py stays the reference,
and tests hold every path here to it.

    unpadding.py      dense layers on real tokens only when a batch has padding (`config.unpad`)
    fused_layers.py   the CPU inference fast path: one Q/K/V product, weights packed once (`minibert embed/predict`)
    quantize.py       int8 matrix products with per-token scales (`--int8`)
    onnx_export.py    `minibert export onnx`, checked in ONNX Runtime before it is written
"""
