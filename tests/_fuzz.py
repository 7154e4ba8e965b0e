"""A seeded mutation fuzzer over the shipped specs (tests/test_hostile_specs.py runs it).

Case `i` of seed `s` is a pure function of (s, i): a shipped spec with one to three
mutations drawn from `MUTATIONS`: deletions, inserted and replaced tokens from a pool of
the language's own words and of hostile values (huge integers, 1e999, control characters,
unbalanced brackets), duplicated and swapped lines, deep nesting of groups, calls and
lists around the limits, long chains of pools, thousands of repeated lines, options with
extreme values, lines spliced from other specs. `run_case` feeds a mutant through what a
user's spec meets: `mmnasdsl.loads` (parse + check), and for a mutant that parses, the
formatter's round trip (`fmt`); for one that passes the check, `build_graph` (`info`,
`render`). It returns the name of the first exception that is not the project's own.

    python tests/_fuzz.py 10000 --seed 1 --timeout 20 --memory 4096 --log cases.tsv
        # counts cases and exceptions by type; PYTHONPATH picks the checkout to test
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "specs").glob("*.mmnas"))

KEYWORDS = ["space", "model", "input", "pool", "encoder", "decoder", "head", "data", "search"]
KEYWORDS += ["train", "guide", "mmnas"]
NAMES = ["SA", "GA", "RSA", "FFN", "enc", "dec", "text", "image", "vqa", "itm", "vg", "words"]
NAMES += ["objects", "glove", "learned", "shapes", "h5", "lstm", "box4", "none", "true", "bce"]
OPTIONS = ["d_model", "heads", "head_dim", "ffn", "dropout", "fused", "bias", "norm"]
OPTIONS += ["relation_dim", "relation_init", "max_len", "embed", "max", "dim", "relations"]
OPTIONS += ["warmup", "epochs", "update_ratio", "split", "batch", "lr", "theta_lr", "patience"]
OPTIONS += ["estimator", "clip", "decay_at", "decay", "root", "scenes", "seed", "answers"]
OPTIONS += ["loss", "candidates", "top_k", "box_weight", "iou"]
HUGE = ["9" * 19, "9" * 4301, "1" + "0" * 5000, "-" + "9" * 30, "10" * 12]
NUMBERS = ["0", "-1", "1", "7", "8", "64", "4096", "4097", "2147483648", "99999999999999999"]
NUMBERS += ["999999999999999999", "1e999", "-1e999", "1e309", "1e-999", "0.0", "-0.5", "1.5"]
NUMBERS += ["4:1", "0:0", "1:999999999999999999", "4x", "0x", "999999999999999999x", ".5"]
NUMBERS += ["1e", "00", "-0", "1.", "4:", ":1", "1e+", "5e-324"]
SYMBOLS = ["(", ")", "[", "]", "{", "}", "=", "|", "*", ",", ":", "#", '"', "\\", ";", "x"]
SYMBOLS += ["\n", "\r\n", "\t", "\f", "\x0b", "\x00", "\u2028", "\u0085", "é", "𝔸", "\ufeff"]
STRINGS = ['""', '"data/vqa"', '"a\\"b"', '"\\n"', '"\x00"', '"' + "a" * 5000 + '"', '"\\']
POOL = KEYWORDS + NAMES + OPTIONS + NUMBERS + SYMBOLS + STRINGS + HUGE


def _pos(rng: random.Random, text: str) -> int:
    return rng.randrange(len(text) + 1)


def _lines(text: str) -> list[str]:
    return text.split("\n")


def delete(rng: random.Random, text: str, _: list[str]) -> str:
    i = _pos(rng, text)
    return text[:i] + text[i + rng.randint(1, 40) :]


def insert(rng: random.Random, text: str, _: list[str]) -> str:
    i = _pos(rng, text)
    tok = rng.choice(POOL)
    sep = rng.choice(["", " "])
    return text[:i] + sep + tok + sep + text[i:]


def replace_token(rng: random.Random, text: str, _: list[str]) -> str:
    import re

    toks = list(re.finditer(r"[A-Za-z0-9_.:\-]+|\S", text))
    if not toks:
        return text
    m = rng.choice(toks)
    return text[: m.start()] + rng.choice(POOL) + text[m.end() :]


def duplicate_line(rng: random.Random, text: str, _: list[str]) -> str:
    lines = _lines(text)
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
    return "\n".join(lines)


def swap_lines(rng: random.Random, text: str, _: list[str]) -> str:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def truncate(rng: random.Random, text: str, _: list[str]) -> str:
    return text[: _pos(rng, text)]


def extreme_number(rng: random.Random, text: str, _: list[str]) -> str:
    import re

    nums = list(re.finditer(r"(?<![A-Za-z_])-?[0-9][0-9.:x]*", text))
    if not nums:
        return text
    m = rng.choice(nums)
    return text[: m.start()] + rng.choice(NUMBERS + HUGE) + text[m.end() :]


def _depth(rng: random.Random) -> int:
    return rng.choice([1, 2, 8, 63, 64, 65, 100, 300, 600, rng.randint(1, 1200)])


def nest(rng: random.Random, text: str, _: list[str]) -> str:
    """Deep groups, repeated groups, lists or calls, around the nesting limit."""
    k = _depth(rng)
    op = rng.choice(["SA", "FFN", "enc", "dec", "GA"])
    shapes = [
        "(" * k + op + ")" * k,
        "(" * k + op + ") * 1" * k,
        "(" * k + op + " | FFN) * 2" + ") * 1" * (k - 1),
        "[" * k + "1" + "]" * k,
        "f(" * k + ")" * k,
        "glove(" * k + "300" + ")" * k,
        "(" * k,
        "]" * k,
    ]
    lines = _lines(text)
    target = [n for n, line in enumerate(lines) if "=" in line] or [0]
    n = rng.choice(target)
    line = lines[n]
    if "=" in line:
        head, _, _ = line.partition("=")
        lines[n] = head + "= " + rng.choice(shapes)
    else:
        lines.insert(n, rng.choice(shapes))
    return "\n".join(lines)


def pool_chain(rng: random.Random, text: str, _: list[str]) -> str:
    """A chain (or a cycle) of many pools, used by a stack."""
    n = rng.choice([2, 50, 490, 992, rng.randint(1, 3000)])
    names = [f"p{k}" for k in range(n)]
    first = rng.choice(["SA | FFN", names[-1], "SA"])
    chain = [f"pool {names[0]} = {first}"]
    chain += [f"pool {names[k]} = {names[k - 1]}" for k in range(1, n)]
    use = f"encoder text = {names[-1]} * {rng.choice([1, 3, 4096, 4097])}"
    return text + "\n" + "\n".join(chain) + "\n" + use + "\n"


def repeat_lines(rng: random.Random, text: str, _: list[str]) -> str:
    """Many copies of one line or of a token: duplicate statements, long stacks."""
    lines = _lines(text)
    n = rng.choice([10, 500, 3000, rng.randint(1, 8000)])
    if rng.random() < 0.5:
        block = [rng.choice(lines)] * n
        at = rng.randrange(len(lines) + 1)
        return "\n".join(lines[:at] + block + lines[at:])
    tok = rng.choice(["SA", "XX", "enc", "SA | FFN", "(SA)", "RSAA", "* 2"])
    return text.replace("= enc", "= " + " ".join([tok] * n), 1)


def option(rng: random.Random, text: str, _: list[str]) -> str:
    """An option (known name or not) with a hostile value, in a section or a call."""
    key = rng.choice(OPTIONS + NAMES)
    value = rng.choice(NUMBERS + HUGE + STRINGS + NAMES + ["[1, 2]", "[-5, 1000000000000]", "[]"])
    for anchor, fmt in (("{", "{{ {k} = {v} "), ("(", "({k} = {v}, ")):
        spots = [i for i, c in enumerate(text) if c == anchor]
        if spots and rng.random() < 0.7:
            i = rng.choice(spots)
            return text[:i] + fmt.format(k=key, v=value) + text[i + 1 :]
    return text + f"\nsearch {{ {key} = {value} }}\n"


def splice(rng: random.Random, text: str, others: list[str]) -> str:
    lines = _lines(text)
    other = _lines(rng.choice(others))
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(other))
    return "\n".join(lines)


def flip_char(rng: random.Random, text: str, _: list[str]) -> str:
    if not text:
        return text
    i = rng.randrange(len(text))
    return text[:i] + rng.choice(SYMBOLS + list("aZ09_ ")) + text[i + 1 :]


MUTATIONS = [
    delete,
    insert,
    replace_token,
    duplicate_line,
    swap_lines,
    truncate,
    extreme_number,
    nest,
    pool_chain,
    repeat_lines,
    option,
    splice,
    flip_char,
]
# Cheap text edits are drawn more often than the big structural ones.
WEIGHTS = [3, 4, 4, 2, 2, 1, 4, 2, 1, 1, 4, 2, 3]


def mutant(seed: int, case: int, bases: list[str]) -> str:
    """Case `case` of `seed`: a shipped spec with one to three mutations."""
    rng = random.Random(f"{seed}:{case}")
    text = rng.choice(bases)
    for _ in range(rng.choice([1, 1, 2, 3])):
        text = rng.choices(MUTATIONS, WEIGHTS)[0](rng, text, bases)
    return text


def run_case(text: str) -> str | None:
    """None when `text` meets only the project's own errors; else the exception's type
    name and message (first line)."""
    import mmnasdsl
    from mmnasdsl.lang.errors import MmnasError

    try:
        _exercise(text)
    except MmnasError:
        return None
    except BaseException as exc:  # what the fuzzer is looking for
        if isinstance(exc, KeyboardInterrupt):
            raise
        first = (str(exc).splitlines() or [""])[0][:200]
        return f"{type(exc).__name__}: {first}"
    del mmnasdsl
    return None


def _exercise(text: str) -> None:
    """parse -> format -> parse (`fmt`); then check; then the graph (`info`, `render`)."""
    import mmnasdsl
    from mmnasdsl.lang.format import format_spec
    from mmnasdsl.lang.parse import parse

    parsed = parse(text, "fuzz.mmnas")
    formatted = format_spec(parsed)
    again = parse(formatted, "fuzz-formatted.mmnas")
    if again != parsed:
        raise AssertionError("parse(format(spec)) != spec")
    if format_spec(again) != formatted:
        raise AssertionError("format is not idempotent")
    spec = mmnasdsl.loads(text, "fuzz.mmnas")
    from mmnasdsl.compile.graph import build_graph

    graph = build_graph(spec)
    graph.params()
    graph.flops(graph.largest_arch())


def bases() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in SHIPPED]


class CaseTimeout(Exception):
    """A case ran longer than the census allows (an older checkout can take minutes)."""


def census(
    n: int, seed: int = 0, timeout: int = 0, log: Path | None = None
) -> tuple[Counter[str], list[tuple[int, str]]]:
    """Run cases 0..n-1 of `seed`: exceptions by type, and the first few failures; with
    `timeout` (seconds), a case running longer counts as `CaseTimeout`; with `log`, one
    line per failing case (case, type, message) is appended there as it happens."""
    import signal

    def expire(*_: object) -> None:
        raise CaseTimeout(f"more than {timeout} s")

    signal.signal(signal.SIGALRM, expire)
    texts = bases()
    by_type: Counter[str] = Counter()
    examples: list[tuple[int, str]] = []
    for case in range(n):
        signal.alarm(timeout)
        found = run_case(mutant(seed, case, texts))
        signal.alarm(0)
        if found is not None:
            by_type[found.split(":")[0]] += 1
            if len(examples) < 10:
                examples.append((case, found))
            if log is not None:
                with log.open("a", encoding="utf-8") as f:
                    f.write(f"{case}\t{found}\n")
    return by_type, examples


if __name__ == "__main__":
    import argparse
    import resource

    ap = argparse.ArgumentParser(description="count the exceptions of fuzzer cases")
    ap.add_argument("n", type=int, nargs="?", default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=0, help="seconds per case (0: none)")
    ap.add_argument("--memory", type=int, default=0, help="address-space cap, MB (0: none)")
    ap.add_argument("--log", type=Path, default=None, help="append each failing case here")
    args = ap.parse_args()
    if args.memory:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory << 20, args.memory << 20))
    found, first = census(args.n, args.seed, args.timeout, args.log)
    print(
        f"{args.n} cases (seed {args.seed}), {sum(found.values())} with exceptions: {dict(found)}"
    )
    for case, what in first:
        print(f"  case {case}: {what}")
