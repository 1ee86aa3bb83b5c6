"""Follow one input through BERT, stage by stage, and see its attention: `minibert explain`.

    loading.py   loads any checkpoint into the model class that uses every head it carries
    trace.py     runs the model once and records what each module computed (forward hooks; model.py untouched)
    journey.py   turns a trace into the numbers a learner reads (norms, entropies, top attended tokens)
    heads.py     what each head says (masked LM, next sentence, classifier, tagger, QA) and which are missing
    report.py    prints the journey, each stage naming the function in minibert that computed it
    explorer.py  writes the self-contained HTML attention explorer (explorer.html is its page)
    heatmaps.py  writes attention heat maps as PNG (matplotlib)
"""
