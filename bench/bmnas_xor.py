"""The BM-NAS planted-pair measurement behind docs/results.md ("BM-NAS").

For each search seed: `mmnasdsl search specs/bmnas-xor.mmnas --searcher darts --seed S`
(timed), the pair its arch.mmnas fuses, and `mmnasdsl train` of that arch (train seed S);
then the found net of the first search seed trained with train seeds 0..k-1, and the same
net on a wrong pair (the cell that fuses a2 and b0 re-paired to a0 and b1, which sees
neither), trained with the same seeds. Every number comes from the project's own commands;
validation accuracy is metrics.json's best epoch.

    nice python bench/bmnas_xor.py [--seeds 0,1,2,3,4] [--train-seeds 0,1,2]
                                   [--results runs/bmnas-xor] [--threads 1]
    nice python bench/bmnas_xor.py --pairs 10   # then: the found net on each of the 15
                                                # pairs of taps, 10 epochs, train seed 0

Prints a markdown table per part and writes RESULTS/results.json. A finished unit (its
metrics.json or final history.json exists) is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mmnasdsl
from mmnasdsl.lang.bmnas_spec import BMNasSpec
from mmnasdsl.lang.format import format_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "bmnas-xor.mmnas"
PLANTED = ("a2", "b0")
WRONG = ("a0", "b1")


def mmnasdsl_cmd(*args: str, threads: int) -> float:
    """Run one command of the CLI; returns its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "mmnasdsl", *args, "--threads", str(threads), "--quiet"]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def pairs(spec: BMNasSpec) -> list[tuple[str, str]]:
    return [c.inputs for c in spec.cells() if c.inputs is not None]


def reaches(spec: BMNasSpec, a: str, b: str) -> bool:
    """Whether some cell sees both taps, directly or through the cells it reads."""
    seen: dict[str, set[str]] = {t: {t} for t in spec.tap_names}
    for cell in spec.cells():
        assert cell.inputs is not None
        seen[cell.name] = seen[cell.inputs[0]] | seen[cell.inputs[1]]
        if {a, b} <= seen[cell.name]:
            return True
    return False


def repaired(spec: BMNasSpec, pair: tuple[str, str]) -> BMNasSpec:
    """The net with the cell that fuses the planted pair on `pair` instead."""
    cells = [
        c.model_copy(update={"inputs": pair}) if set(c.inputs or ()) == set(PLANTED) else c
        for c in spec.cells()
    ]
    return spec.replace_cells(cells)


def pair_probe(base: BMNasSpec, out: Path, threads: int, epochs: int) -> list[dict[str, Any]]:
    """The found net with its planted-pair cell on each pair of taps in turn (train seed 0)."""
    rows = []
    taps = base.tap_names
    for i, a in enumerate(taps):
        for b in taps[i + 1 :]:
            path = out / f"pair-{a}-{b}.mmnas"
            net = repaired(base, (a, b))
            path.write_text(
                format_spec(net, header=f"the found net, its planted cell on ({a}, {b})")
            )
            run = out / f"pair-{a}-{b}-train"
            if not (run / "metrics.json").exists():
                mmnasdsl_cmd(
                    "train",
                    str(path),
                    "-o",
                    str(run),
                    "--seed",
                    "0",
                    "--epochs",
                    str(epochs),
                    threads=threads,
                )
            rows.append(
                {
                    "pair": f"({a}, {b})",
                    "accuracy": val_accuracy(run),
                    "both": reaches(net, *PLANTED),
                }
            )
    return rows


def val_accuracy(run: Path) -> float:
    metrics = json.loads((run / "metrics.json").read_text())
    return float(metrics["best"]["accuracy"])


def search(seed: int, out: Path, threads: int) -> dict[str, Any]:
    run = out / f"search-{seed}"
    history = run / "history.json"
    seconds = None
    if not (history.exists() and json.loads(history.read_text()).get("done")):
        seconds = mmnasdsl_cmd(
            "search",
            str(SPEC),
            "-o",
            str(run),
            "--seed",
            str(seed),
            "--searcher",
            "darts",
            *(["--resume"] if (run / "checkpoint.pt").exists() else []),
            threads=threads,
        )
    arch = mmnasdsl.load(run / "arch.mmnas")
    assert isinstance(arch, BMNasSpec)
    found = pairs(arch)
    return {
        "seed": seed,
        "seconds": seconds,
        "pairs": [list(p) for p in found],
        "planted": any(set(p) == set(PLANTED) for p in found),
        "arch": str(run / "arch.mmnas"),
    }


def train(spec_path: Path, seed: int, run: Path, threads: int) -> dict[str, Any]:
    seconds = None
    if not (run / "metrics.json").exists() or not _finished(run):
        seconds = mmnasdsl_cmd(
            "train",
            str(spec_path),
            "-o",
            str(run),
            "--seed",
            str(seed),
            *(["--resume"] if (run / "last.pt").exists() else []),
            threads=threads,
        )
    return {"seed": seed, "accuracy": val_accuracy(run), "seconds": seconds, "run": str(run)}


def _finished(run: Path) -> bool:
    """metrics.json holds every epoch of the spec's train section."""
    from mmnasdsl.lang.settings import train_settings

    metrics = json.loads((run / "metrics.json").read_text())
    return len(metrics["epochs"]) >= train_settings(mmnasdsl.load(metrics["spec"])).epochs


def table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for title, _ in cols) + " |"
    rule = "|" + "---|" * len(cols)
    body = ["| " + " | ".join(fmt.format(**r) for _, fmt in cols) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--train-seeds", default="0,1,2")
    ap.add_argument("--results", default="runs/bmnas-xor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--pairs",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="only the probe: the found net on every pair, trained EPOCHS epochs",
    )
    args = ap.parse_args()
    out = (ROOT / args.results).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.pairs:
        base = mmnasdsl.load(out / "found.mmnas")
        assert isinstance(base, BMNasSpec)
        rows = pair_probe(base, out, args.threads, args.pairs)
        (out / "pairs.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(
            table(
                rows,
                [
                    ("c1's pair", "{pair}"),
                    ("val accuracy", "{accuracy:.1f}"),
                    ("some cell sees a2 and b0", "{both}"),
                ],
            )
        )
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    train_seeds = [int(s) for s in args.train_seeds.split(",")]

    searches = []
    for s in seeds:
        row = search(s, out, args.threads)
        row |= train(Path(row["arch"]), s, out / f"train-{s}", args.threads)
        searches.append(row)
        print(json.dumps(row), flush=True)

    base = mmnasdsl.load(searches[0]["arch"])
    assert isinstance(base, BMNasSpec)
    found_path, wrong_path = out / "found.mmnas", out / "wrong.mmnas"
    wrong = repaired(base, WRONG)
    found_path.write_text(format_spec(base, header="the found net of the first search seed"))
    wrong_path.write_text(format_spec(wrong, header=f"that net, its {PLANTED} cell on {WRONG}"))
    sees_planted = reaches(mmnasdsl.load(wrong_path), *PLANTED)  # type: ignore[arg-type]
    found_runs, wrong_runs = [], []
    for s in train_seeds:
        found_runs.append(train(found_path, s, out / f"found-train-{s}", args.threads))
        wrong_runs.append(train(wrong_path, s, out / f"wrong-train-{s}", args.threads))

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "searches": searches,
        "found": {"pairs": pairs(base), "runs": found_runs},
        "wrong": {"pairs": pairs(wrong), "sees_planted": sees_planted, "runs": wrong_runs},
    }
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    for r in searches:
        r["pair_text"] = " ".join(f"({a}, {b})" for a, b in r["pairs"])
        r["time"] = "-" if r["seconds"] is None else f"{r['seconds']:.0f} s"
    print(
        table(
            searches,
            [
                ("search seed", "{seed}"),
                ("search time", "{time}"),
                ("pairs (c1, c2)", "{pair_text}"),
                ("planted pair found", "{planted}"),
                ("train val accuracy", "{accuracy:.1f}"),
            ],
        )
    )
    rows = [
        {"seed": f["seed"], "found": f["accuracy"], "wrong": w["accuracy"]}
        for f, w in zip(found_runs, wrong_runs, strict=True)
    ]
    print(
        table(
            rows,
            [("train seed", "{seed}"), ("found net", "{found:.1f}"), ("wrong pair", "{wrong:.1f}")],
        )
    )
    print(f"wrong net pairs {pairs(wrong)}; some cell sees both planted taps: {sees_planted}")


if __name__ == "__main__":
    main()
