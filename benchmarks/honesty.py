"""What a published figure must satisfy: a ceiling it cannot exceed, its spread, and quiet rounds.

Padding ceiling. minibert runs the dense layers of a padded batch on its real tokens only; its peers compute every
padded position. Removing padding can therefore make a batch at most padded/real times faster than the same batch
without padding (44% padding: at most 1/0.56 = 1.8x; attention still runs on the padded layout, so less). Each
mixed-length case also times minibert on a *dense twin* (same shape, every position real) in the same rounds; the
padding gain is twin time / mixed time, per round, and its median must not exceed the ceiling. The ratio against a
peer then has the ceiling `padded/real x (peer's time on the mixed batch / minibert's time on the twin)`: the dense
ratio, times what padding removal can add.

A claim above its ceiling means the measurement is wrong (contention, a cache effect, a bug), and it fails the run.
A case whose rounds could not be kept quiet marks the run contended: it is written beside the publishable results,
never over them.
"""

from __future__ import annotations

import statistics


def padding(real_tokens: int, padded_tokens: int) -> dict:
    """Share of a batch that is padding, and the most that removing it can speed the batch up."""
    if not 0 < real_tokens <= padded_tokens:
        raise ValueError(f"need 0 < real tokens ({real_tokens}) <= padded tokens ({padded_tokens})")
    return {"real_tokens": real_tokens, "padded_tokens": padded_tokens,
            "share": 1 - real_tokens / padded_tokens, "ceiling": padded_tokens / real_tokens}


def spread(values: list[float]) -> dict:
    """Range and quartiles of per-round values."""
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    return {"min": ordered[0], "q1": quartiles[0], "median": statistics.median(ordered), "q3": quartiles[2],
            "max": ordered[-1]}


def per_round_ratios(slower: list[float], faster: list[float]) -> list[float]:
    """Per round: seconds of one contestant over seconds of the other (rounds are interleaved, so a drift of the
    machine's speed between rounds cancels)."""
    return [a / b for a, b in zip(slower, faster)]


def attach_padding_gain(result: dict, mixed: str, twin: str, peers: list[str]) -> None:
    """Set padding_gain (median twin/mixed time of `mixed`, minibert on the padded batch), its spread, and each
    peer's ratio ceiling, on a result whose `seconds` hold per-round samples of `mixed`, `twin` and the peers."""
    seconds, ceiling = result["seconds"], result["padding"]["ceiling"]
    gains = per_round_ratios(seconds[twin], seconds[mixed])
    result["padding_gain"] = statistics.median(gains)
    result["padding_gain_spread"] = spread(gains)
    result["ratio_ceilings"] = {peer: ceiling * statistics.median(per_round_ratios(seconds[peer], seconds[twin]))
                                for peer in peers}


def ceiling_violations(cases: list[dict]) -> list[str]:
    """One line per case whose padding gain exceeds the ceiling padding removal allows."""
    problems = []
    for case in cases:
        if "padding_gain" not in case:
            continue
        gain, ceiling = case["padding_gain"], case["padding"]["ceiling"]
        if not gain <= ceiling:
            problems.append(f"{case['name']} ({case.get('condition', 'quiet')}): padding removal measured "
                            f"{gain:.2f}x faster, above its ceiling {ceiling:.2f}x "
                            f"({case['padding']['share']:.0%} padding)")
    return problems


def contended_cases(cases: list[dict]) -> list[str]:
    return [f"{case['name']} ({case.get('condition', 'quiet')})" for case in cases
            if case.get("timing", {}).get("contended")]


def publication_problems(results: dict) -> list[str]:
    """Why these results may not be published; empty when they may."""
    problems = [f"claim above its ceiling: {line}" for line in ceiling_violations(results["cases"])]
    contended = contended_cases(results["cases"])
    if contended:
        problems.append(f"{len(contended)} of {len(results['cases'])} cases contended (other processes used more "
                        f"than the quiet limit in too many rounds): {', '.join(contended)}")
    if not results.get("complete"):
        problems.append("the run did not finish")
    return problems
