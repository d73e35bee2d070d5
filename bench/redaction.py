"""Benchmark: redacting a MiB of log text, against a plain replace of the raw secrets.

    .venv/bin/python -m bench.redaction [--rounds 21] [--quick]

The text is the one tests/unit/test_redaction.py redacts: 1 MiB of words and base64 with
3 secrets known, one of them raw at its very end. It is redacted three ways, rounds
interleaved (so a busy machine slows each alike), and the median of each is printed, wall
clock and CPU time of the thread (which a busy machine disturbs far less), with its ratio
to the first:

* replace: ``str.replace`` of each raw secret (the floor: no encoded form is looked for);
* alternation: one regex ``a|b|c`` of every form of the 3 secrets, longest first (what
  agent/redaction.py's trie replaced);
* redactor: ``Redactor.redact_text``, the trie of every form (what a run does).

Also printed: how many forms the 3 secrets expand to and the median time to build the
redactor's pattern for them (once per set of known secrets in a run). Each way's output is
checked to end with the mask and hold no raw secret; the script fails otherwise.
"""

from __future__ import annotations

import argparse
import base64
import random
import re
import string
import sys
import time
from collections.abc import Callable
from functools import partial

from agent.redaction import MASK, Redactor, secret_forms
from bench.timing import Timing, median_timings

SECRETS = ("hunter2-Pass'w\"rd$x", "S3cr3tT0ken_abcdefghijkl", "pässwörd 42&x=y")


def mixed_text() -> str:
    """1 MiB of random words, then random base64, ending with the second secret raw."""
    rng = random.Random(1)  # noqa: S311 (reproducible filler text)
    words = ["".join(rng.choices(string.ascii_letters, k=rng.randint(2, 10))) for _ in range(500)]
    text = " ".join(rng.choices(words, k=120_000))[:700_000]
    filler = base64.b64encode(rng.randbytes(300_000)).decode("ascii")
    return (text + filler + SECRETS[1])[-(1 << 20) :]


def timed(call: Callable[[], object]) -> Timing:
    """Wall-clock and CPU (this thread's) seconds of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    call()
    return Timing(time.perf_counter() - wall, time.thread_time() - cpu)


def replace_raw(text: str) -> str:
    for secret in SECRETS:
        text = text.replace(secret, MASK)
    return text


def alternation() -> Callable[[str], str]:
    forms = set().union(*(secret_forms(s) for s in SECRETS))
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
    return lambda text: pattern.sub(MASK, text)


def compile_pattern() -> Timing:
    # re keeps compiled patterns in a cache: purge it, or every round after the first
    # would time a cache hit.
    re.purge()
    return timed(lambda: Redactor(SECRETS, registry=None).redact_text(""))


def measure(rounds: int) -> dict[str, Timing]:
    """Median timing of each way (and of ``compile``) over ``rounds`` interleaved rounds."""
    text = mixed_text()
    redactor = Redactor(SECRETS, registry=None)
    ways: dict[str, Callable[[str], str]] = {
        "replace": replace_raw,
        "alternation": alternation(),
        "redactor": redactor.redact_text,
    }
    for name, way in ways.items():  # once untimed: the pattern compiled, the output checked
        out = way(text)
        if not out.endswith(MASK) or any(secret in out for secret in SECRETS):
            sys.exit(f"bench.redaction: {name} left a secret in the text")
    samples: dict[str, list[Timing]] = {name: [] for name in [*ways, "compile"]}
    for _ in range(rounds):
        for name, way in ways.items():
            samples[name].append(timed(partial(way, text)))
        samples["compile"].append(compile_pattern())
    return median_timings(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="three rounds (for the tests)")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    medians = measure(rounds)
    forms = len(set().union(*(secret_forms(s) for s in SECRETS)))
    floor, redactor, alternative = medians["replace"], medians["redactor"], medians["alternation"]
    print(f"1 MiB of words and base64, {len(SECRETS)} secrets ({forms} forms), median of {rounds}:")
    print(f"  {'':12} {'wall':>10} {'ratio':>7}   {'cpu':>10} {'ratio':>7}")
    for name in ("replace", "alternation", "redactor"):
        got = medians[name]
        print(
            f"  {name:<12} {got.wall * 1000:7.2f} ms {got.wall / floor.wall:6.1f}x   "
            f"{got.cpu * 1000:7.2f} ms {got.cpu / floor.cpu:6.1f}x"
        )
    print(
        f"redactor / alternation: wall {redactor.wall / alternative.wall:.2f}, "
        f"cpu {redactor.cpu / alternative.cpu:.2f}; pattern built once per secret set: "
        f"wall {medians['compile'].wall * 1000:.2f} ms, cpu {medians['compile'].cpu * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
