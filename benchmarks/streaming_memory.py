"""Peak memory of `minibert predict` and `minibert embed` against the number of input lines: they stream their input
in chunks (minibert/cli/streaming.py), so the peak should not grow with the file.

    python benchmarks/streaming_memory.py CLASSIFIER_DIR ENCODER_DIR --lines 100000 1000000

writes N lines of 4-12 words (seeded) for each N, runs each command once in a fresh process (`-i lines.txt -o
out`), and prints the process's peak resident set (ru_maxrss, as `/usr/bin/time -v` reports it) with the machine's
facts. Not part of benchmarks/run.py: it measures memory, not speed, and a 1M-line run takes minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = ("the a film movie was is plot actor scene story very quite good bad alice bob paris london").split()


def write_lines(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as file:
        for _ in range(count):
            file.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "\n")


def peak_rss_mib(argv: list[str]) -> tuple[int, float]:
    """(exit status, peak resident MiB) of `python -m minibert ARGV` in a fresh process."""
    with subprocess.Popen([sys.executable, "-m", "minibert", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("classifier", help="a fine-tuned classification folder, for predict")
    parser.add_argument("encoder", help="a checkpoint folder, for embed")
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    from minibert.plumbing.machine import machine_facts
    print(machine_facts(precision="fp32").describe())
    with tempfile.TemporaryDirectory() as folder:
        for count in args.lines:
            lines = Path(folder) / f"{count}.txt"
            write_lines(lines, count)
            for command, model, output in (("predict", args.classifier, "out.jsonl"),
                                           ("embed", args.encoder, "out.npy")):
                status, mib = peak_rss_mib([command, model, "-i", str(lines), "-o", str(Path(folder) / output)])
                print(f"{command} {count:>9,} lines: peak RSS {mib:,.0f} MiB (exit {status})", flush=True)


if __name__ == "__main__":
    main()
