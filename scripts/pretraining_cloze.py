"""Cloze sentences that ask whether a small BERT pretrained on the Wikipedia leads uses context: the five the demo
shows, and held-out sentences of the same kinds (capitals, births, who directed or wrote, countries) that no
recipe was tuned on. Each has one [MASK] and the words accepted there.

The held-out list was written before any model was trained on it and is not to be edited to suit a result; a
word that a vocabulary has no single token for simply cannot be hit, which is part of what the test measures.
"""

from __future__ import annotations

from minibert.inference import fill_mask

DEMO = [
    ("paris is the capital [MASK] france.", {"of"}),
    ("he was born [MASK] 1950.", {"in"}),
    ("the film was directed [MASK] steven spielberg.", {"by"}),
    ("it is the largest city in the united [MASK].", {"states", "kingdom"}),
    ("the capital of france is [MASK].", {"paris"}),
]

HELD_OUT = [
    # capitals
    ("berlin is the capital [MASK] germany.", {"of"}),
    ("madrid is the capital and largest city of [MASK].", {"spain"}),
    ("the capital of japan is [MASK].", {"tokyo"}),
    ("dublin is the [MASK] and largest city of ireland.", {"capital"}),
    ("rome is the capital city [MASK] italy.", {"of"}),
    ("the capital of italy is [MASK].", {"rome"}),
    ("london is the capital of the united [MASK].", {"kingdom"}),
    ("washington is the capital of the united states of [MASK].", {"america"}),
    # births and deaths
    ("she was born [MASK] vienna.", {"in"}),
    ("he was born [MASK] 12 may 1820.", {"on"}),
    ("she was born in 1867 [MASK] warsaw.", {"in"}),
    ("he was [MASK] in 1879.", {"born"}),
    ("he died [MASK] 1945.", {"in"}),
    # who directed, wrote, composed
    ("the film was produced [MASK] walt disney.", {"by"}),
    ("the novel was written [MASK] charles dickens.", {"by"}),
    ("it is a 1994 american [MASK] directed by robert zemeckis.", {"film"}),
    ("the [MASK] was directed by alfred hitchcock.", {"film"}),
    ("the song was written [MASK] paul mccartney.", {"by"}),
    ("the opera was composed [MASK] giuseppe verdi.", {"by"}),
    ("he is an american actor [MASK] director.", {"and"}),
    # countries and places
    ("it is the second largest city in the united [MASK].", {"states", "kingdom"}),
    ("new york is the most populous city in the united [MASK].", {"states"}),
    ("canada is a country in north [MASK].", {"america"}),
    ("brazil is the largest country in south [MASK].", {"america"}),
    ("egypt is a country in [MASK] africa.", {"north"}),
    ("the nile is the longest [MASK] in africa.", {"river"}),
    ("the city is located [MASK] the north of the country.", {"in"}),
    ("the population of the city was 500,000 [MASK] 2010.", {"in"}),
]


def top_k_hits(model, tokenizer, sentences: list[tuple[str, set[str]]], k: int = 5) -> list[tuple[str, list, bool]]:
    """For each sentence: (sentence, the top-k (token, probability) guesses, whether an accepted word is among
    them)."""
    results = []
    for sentence, accepted in sentences:
        guesses = fill_mask(model, sentence, tokenizer=tokenizer, top_k=k)[0]
        results.append((sentence, guesses, any(token in accepted for token, _ in guesses)))
    return results


def hit_rate(results: list[tuple[str, list, bool]]) -> float:
    return sum(hit for _, _, hit in results) / len(results)
