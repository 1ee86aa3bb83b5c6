"""Follow one input through BERT, stage by stage, and see its attention: `minibert explain`.

    trace.py     runs the model once and records what each module computed (forward hooks, model.py untouched)
    journey.py   turns a trace into the numbers a learner reads (norms, entropies, top attended tokens, heads)
    report.py    prints them, each stage naming the function in model.py that computed it
    explorer.py  writes the self-contained HTML attention explorer (explorer.html is its page)
    heatmaps.py  writes attention heat maps as PNG (matplotlib)
"""
