"""Does the search find the planted op? (issue 12, part 2): search, train, compare.

For each planted space (specs/planted-rsa.mmnas, specs/planted-ga.mmnas; docs/planted.md)
and each seed, at the spec's own `search { }` and `train { }` settings:

- **searched**: `mmnasdsl search` the space (wall and CPU seconds, the final argmax, whether
  its decoder holds the planted op, whether the argmax was the same in the last 3 search
  epochs of history.json), then `mmnasdsl train` the searched arch from scratch and
  `mmnasdsl eval --split test` its best.pt;
- **searched, pool without the op**: the same with the planted op taken out of the decoder
  pool (the Table 2a question on a planted world; `--no-op-pool` runs it);
- **random**: 5 architectures drawn uniformly from the space (seeded by the seed), each
  trained with that seed; runs bench/planted.py already recorded for an (arch, seed) are
  reused, new ones go to the same results.jsonl;
- **the gap**: every net without the op at the first seed, then the best of them and the
  same net with one decoder block changed to the op at every seed (bench/planted.py's
  `gap`; a space already trained in full by bench/planted.py needs nothing more).

Searched units are recorded in RESULTS/<task>/search.jsonl, trained fixed nets in
RESULTS/<task>/results.jsonl (shared with bench/planted.py). Everything resumes. The
tables go between markers into docs/results.md, section "Does the search find it?".

    nice python bench/planted_search.py [--task rsa|ga] [--seeds 0,1,2,3,4] [--jobs 2]
        [--no-op-pool] [--report] [--results runs/planted] [--doc docs/results.md] [--tiny]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation  # bench/ablation.py: Runner, run_all, report helpers
import planted as bp  # bench/planted.py: the spaces, their cells and runner

from mmnasdsl.data import planted as world
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.settings import search_settings
from mmnasdsl.search import sample_architectures

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
BEGIN, END = "<!-- planted-search:begin -->", "<!-- planted-search:end -->"
N_RANDOM = 5
RANDOM_SEED = 1000  # seed s draws its random nets with sample_architectures(.., 1000 + s)
STABLE = 3  # the argmax must be the same over this many last search epochs
SEARCHED, NO_OP = "searched", "searched-no-op"


# ------------------------------------------------------------------------------ cells


@dataclass(frozen=True)
class SearchSpace(bp.Space):
    """A planted space as searched: its results depend on the search settings too."""

    def fingerprint(self) -> str:
        text = format_spec(self.spec.model_copy(update={"comments": ()}))
        key = json.dumps({"spec": text, "world": world.WORLD_VERSION, "what": "search"})
        return hashlib.sha1(key.encode()).hexdigest()[:10]


def search_cells(space: bp.Space, no_op_pool: bool) -> list[ablation.Cell]:
    """The full space; with `no_op_pool` also the space whose decoder pool lacks the op."""
    cells = [ablation.Cell(SEARCHED, "searched (full pool)", space.spec, True, (0, 0))]
    if no_op_pool:
        ops = tuple(o for o in decoder_ops(space) if o != space.op)
        spec = ablation.with_pool(space.spec, "dec", ops)
        cells.append(ablation.Cell(NO_OP, f"searched, pool without {space.op}", spec, True, (0, 0)))
    return cells


def decoder_ops(space: bp.Space) -> tuple[str, ...]:
    """The decoder pool's ops, in pool order (from the first decoder block's choices)."""
    return next(b.choices for b in space.spec.blocks() if b.stack == "decoder")


def random_keys(space: bp.Space, seed: int, n: int = N_RANDOM) -> list[str]:
    """The `n` uniform architectures of seed `seed` (their bench/planted.py keys)."""
    blocks = space.spec.blocks()
    keys = []
    for arch in sample_architectures([len(b.choices) for b in blocks], n, RANDOM_SEED + seed):
        ops: dict[str, list[str]] = {}
        for b, i in zip(blocks, arch, strict=True):
            ops.setdefault(b.stack, []).append(b.choices[i])
        keys.append(bp.arch_key(ops))
    return keys


# ---------------------------------------------------------------------------- running


def history_facts(history: dict[str, Any], op: str) -> dict[str, Any]:
    """What a search's history.json says: the final argmax, the op in its decoder, the same
    argmax over the last STABLE search epochs, the search epochs run, the final entropy."""
    epochs = [e for e in history["epochs"] if e["phase"] == "search"]
    archs = [json.dumps(e["arch"], sort_keys=True) for e in epochs]
    last = epochs[-1] if epochs else history["epochs"][-1]
    return {
        "search_arch": last["arch"],
        "holds_op": op in last["arch"].get("decoder", []),
        "stable": len(archs) >= STABLE and len(set(archs[-STABLE:])) == 1,
        "search_epochs": len(epochs),
        "argmax_changes": sum(a != b for a, b in itertools.pairwise(archs)),
        "entropy": last.get("entropy"),
        "search_metric": last.get("metric"),
    }


class SearchRunner(bp.PlantedRunner):
    """bench/planted.py's runner for searched cells: times each search (wall and CPU
    seconds of the `mmnasdsl search` process) and records what its history says."""

    @property
    def results_file(self) -> Path:
        return self.results / "search.jsonl"

    def timed_cli(self, *args: str | Path) -> tuple[float, float]:
        """One command; its (wall, CPU) seconds (CPU: user + system of that child alone)."""
        t0, c0 = time.perf_counter(), time.process_time()
        if self.inprocess:
            self.cli(*args)
            return time.perf_counter() - t0, time.process_time() - c0
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "mmnasdsl", *(str(a) for a in args)]
        with tempfile.TemporaryFile("w+", encoding="utf-8") as err:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"mmnasdsl {' '.join(argv[3:])} failed:\n{err.read()[-2000:]}")
        return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime

    def search(self, cell: ablation.Cell, seed: int, folder: Path) -> Path:
        """Search once (a finished search, timing.json written, is not run again)."""
        out = folder / "search"
        timing = folder / "timing.json"
        if not timing.is_file():
            space = folder / "space.mmnas"
            space.write_text(
                f"# bench/planted_search.py: {cell.label} of specs/planted-{self.space.task}"
                f".mmnas\n{format_spec(cell.spec)}",
                encoding="utf-8",
            )
            wall, cpu = self.timed_cli("search", space, *self.run_flags(out, "checkpoint.pt", seed))
            timing.write_text(json.dumps({"wall": wall, "cpu": cpu}), encoding="utf-8")
        return out / "arch.mmnas"

    def record(
        self, cell: ablation.Cell, seed: int, net: Path, folder: Path, seconds: float
    ) -> dict[str, Any]:
        rec = super().record(cell, seed, net, folder, seconds)
        history = json.loads((folder / "search" / "history.json").read_text())
        timing = json.loads((folder / "timing.json").read_text())
        return {
            **rec,
            **history_facts(history, self.space.op),
            "search_wall": timing["wall"],
            "search_cpu": timing["cpu"],
        }


def log_to(task: str) -> Any:
    return lambda m: print(time.strftime("%H:%M:%S"), task, m, flush=True)


def run_searches(
    space: bp.Space, results: Path, seeds: Sequence[int], args: argparse.Namespace
) -> list[str]:
    """Search, train and evaluate every search cell with every seed (seed-major)."""
    sspace = SearchSpace(space.task, space.spec, space.tiny)
    folder = results / space.task
    folder.mkdir(parents=True, exist_ok=True)
    session = {"start": time.time(), "argv": args.argv, "sizes": sspace.fingerprint()}
    runner = SearchRunner(
        sspace,  # type: ignore[arg-type]
        folder,
        bp.ensure_data(results, space),
        inprocess=args.inprocess,
        log=log_to(space.task),
        session=session,
    )
    units = [(c, s) for s in seeds for c in search_cells(space, args.no_op_pool)]
    try:
        return ablation.run_all(runner, units, 1 if args.inprocess else args.jobs)
    finally:
        runner.mark_session()


def gap_keys(space: bp.Space, results: Path, seeds: Sequence[int]) -> list[tuple[str, int]]:
    """The fixed nets the gap needs, as (arch key, seed): every net without the op at the
    first seed; once those are in, the best of them and its two single-block changes to the
    op at every seed."""
    archs = {bp.arch_key(a): a for a in bp.architectures(space.spec)}
    without = [k for k, a in archs.items() if not bp.has_op(a, space.op)]
    first = [(k, seeds[0]) for k in without]
    by = bp.records(space, results, seeds)
    seed0 = {k: [r for r in by.get(k, []) if r["seed"] == seeds[0]] for k in without}
    if any(not v for v in seed0.values()):
        return first
    best = max(without, key=lambda k: bp.mean(seed0[k]))
    nets = [best, *(bp.arch_key(bp.with_op(archs[best], space.op, b)) for b in range(2))]
    return first + [(k, s) for s in seeds for k in nets]


def run_fixed(
    space: bp.Space, results: Path, units: list[tuple[str, int]], args: argparse.Namespace
) -> list[str]:
    """Train (arch key, seed) units through bench/planted.py's runner (shared results)."""
    session = {"start": time.time(), "argv": args.argv, "sizes": space.fingerprint()}
    runner = bp.make_runner(
        space, results, inprocess=args.inprocess, log=log_to(space.task), session=session
    )
    cells = bp.cells(space)
    todo = [(cells[k], s) for k, s in dict.fromkeys(units)]
    try:
        return ablation.run_all(runner, todo, 1 if args.inprocess else args.jobs)
    finally:
        runner.mark_session()


def execute(
    spaces: Sequence[bp.Space], results: Path, seeds: Sequence[int], args: argparse.Namespace
) -> list[str]:
    """Every space's searches first, then their random nets, then the gap's nets (two
    rounds: the nets without the op at the first seed, then the best of them and its two
    changes at every seed), so that a run stopped early has the most telling units."""
    failures: list[str] = []
    for space in spaces:
        failures += run_searches(space, results, seeds, args)
    for space in spaces:
        randoms = [(k, s) for s in seeds for k in random_keys(space, s)]
        failures += run_fixed(space, results, randoms, args)
    for _ in range(2 * (not args.no_gap)):
        for space in spaces:
            failures += run_fixed(space, results, gap_keys(space, results, seeds), args)
    return failures


# -------------------------------------------------------------------------- reporting


def search_records(space: bp.Space, results: Path, seeds: Sequence[int]) -> dict[str, list]:
    """The searched units of this space at its current search settings, by cell, by seed."""
    fp = SearchSpace(space.task, space.spec, space.tiny).fingerprint()
    recs = [
        r
        for r in ablation.read_results(results / space.task / "search.jsonl")
        if r.get("sizes") == fp
    ]
    return ablation.by_cell(recs, seeds)


def arch_text(arch: dict[str, list[str]]) -> str:
    return " / ".join(" ".join(ops) for ops in arch.values())


def random_means(
    space: bp.Space, fixed: dict[str, list[dict]], seeds: Sequence[int]
) -> dict[int, tuple[float, list[str]]]:
    """Per seed with all its random nets trained: (mean test accuracy, each 'key acc')."""
    out = {}
    for s in seeds:
        got = []
        for k in random_keys(space, s):
            rec = next((r for r in fixed.get(k, []) if r["seed"] == s), None)
            if rec is None:
                break
            got.append((k, float(rec["test"]["accuracy"])))
        else:
            out[s] = (statistics.fmean(a for _, a in got), [f"{k} {a:.1f}" for k, a in got])
    return out


def num(x: float, fmt: str = ".1f") -> str:
    """A number for a table cell; '–' for NaN (not measured yet)."""
    return "–" if x != x else format(x, fmt)


def count(flags: Sequence[bool]) -> str:
    return f"{sum(flags)}/{len(flags)}"


def verdict(ok: bool, measured: int = 1, wanted: int = 1) -> str:
    """**met** / **not met**, or **unfinished** while fewer seeds than wanted are measured."""
    if measured < wanted:
        return f"**unfinished** ({measured} of {wanted} seeds measured)"
    return "**met**" if ok else "**not met**"


def pool_row(what: str, recs: list[dict[str, Any]]) -> str:
    accs = bp.acc(recs)
    nets = len({r["cell"] for r in recs})
    return f"| {what} | {nets} nets, {len(recs)} runs | {ablation.mean_std(accs)} | – | – |"


def summary_table(
    space: bp.Space, searched: dict[str, list], fixed: dict[str, list], seeds: Sequence[int]
) -> list[str]:
    """Searched, random, every trained net with / without the op, the gap."""
    rnd = random_means(space, fixed, seeds)
    lines = [ablation.header(("net", "seeds", "test accuracy", "each seed", f"holds {space.op}"))]
    for key, label in (
        (SEARCHED, "searched (full pool)"),
        (NO_OP, f"searched, pool without {space.op}"),
    ):
        recs = searched.get(key, [])
        if recs:
            each = ", ".join(f"{a:.1f}" for a in bp.acc(recs))
            held = count([r["holds_op"] for r in recs])
            lines.append(
                f"| {label} | {len(recs)}/{len(seeds)} | {ablation.mean_std(bp.acc(recs))} | "
                f"{each} | {held} |"
            )
    if rnd:
        means = [m for m, _ in rnd.values()]
        held = [
            bp.has_op(a, space.op) for s in rnd for a in map(arch_of_key, random_keys(space, s))
        ]
        lines.append(
            f"| random: mean of {N_RANDOM} uniform nets per seed | {len(rnd)}/{len(seeds)} | "
            f"{ablation.mean_std(means)} | {', '.join(f'{m:.1f}' for m in means)} | {count(held)} |"
        )
    archs = {bp.arch_key(a): a for a in bp.architectures(space.spec)}
    every = [r for k, rs in fixed.items() if k in archs for r in rs]
    lines.append(
        pool_row(
            f"every trained net with {space.op}",
            [r for r in every if bp.has_op(r["arch"], space.op)],
        )
    )
    lines.append(
        pool_row(
            f"every trained net without {space.op}",
            [r for r in every if not bp.has_op(r["arch"], space.op)],
        )
    )
    return lines


def arch_of_key(key: str) -> dict[str, list[str]]:
    """`sa/rsa-ffn` -> {encoder: [SA], decoder: [RSA, FFN]}."""
    enc, dec = key.split("/")
    return {"encoder": enc.upper().split("-"), "decoder": dec.upper().split("-")}


def seed_table(
    space: bp.Space, searched: dict[str, list], fixed: dict[str, list], seeds: Sequence[int]
) -> list[str]:
    """One row per searched unit: what the search did and what its net scored."""
    rnd = random_means(space, fixed, seeds)
    lines = [
        ablation.header(
            (
                "pool",
                "seed",
                "searched arch",
                space.op,
                f"same argmax last {STABLE}",
                "search epochs (argmax changes)",
                "search wall s",
                "search CPU s",
                "final θ entropy per block",
                "test",
                "random nets (test)",
                "random mean",
                "searched − random",
            )
        )
    ]
    for key in (SEARCHED, NO_OP):
        for r in searched.get(key, []):
            s = r["seed"]
            m, each = rnd.get(s, (float("nan"), []))
            test = float(r["test"]["accuracy"])
            pool = "full" if key == SEARCHED else f"without {space.op}"
            ent = ", ".join(f"{e:.2f}" for e in r["entropy"] or [])
            lines.append(
                f"| {pool} | {s} | {arch_text(r['search_arch'])} | "
                f"{'yes' if r['holds_op'] else 'no'} | {'yes' if r['stable'] else 'no'} | "
                f"{r['search_epochs']} ({r['argmax_changes']}) | {r['search_wall']:.0f} | "
                f"{r['search_cpu']:.0f} | {ent} | {test:.1f} | {'; '.join(each) or '–'} | "
                f"{num(m)} | {num(test - m, '+.1f')} |"
            )
    return lines


def targets(
    space: bp.Space, searched: dict[str, list], fixed: dict[str, list], seeds: Sequence[int]
) -> list[str]:
    """The issue's targets for this space, each stated as met or not met with its numbers."""
    recs = searched.get(SEARCHED, [])
    if not recs:
        return ["No finished search yet."]
    rnd = random_means(space, fixed, seeds)
    diffs = [float(r["test"]["accuracy"]) - rnd[r["seed"]][0] for r in recs if r["seed"] in rnd]
    held = sum(r["holds_op"] for r in recs)
    stable = sum(r["stable"] for r in recs)
    walls = [r["search_wall"] for r in recs]
    cpus = [r["search_cpu"] for r in recs]
    need = max(len(seeds) - 1, 1)
    out = [
        f"- searched decoder holds {space.op}: {held} of {len(recs)} seeds (target: at least "
        f"{need} of {len(seeds)}): {verdict(held >= need, len(recs), len(seeds))}",
        f"- argmax unchanged over the last {STABLE} search epochs: {stable} of {len(recs)} "
        f"(target: at least {need}): {verdict(stable >= need, len(recs), len(seeds))}",
        f"- search wall time: {min(walls):.0f}–{max(walls):.0f} s, CPU {min(cpus):.0f}–"
        f"{max(cpus):.0f} s (target: under 600 s): {verdict(max(walls) < 600)}",
    ]
    if diffs:
        out.append(
            f"- searched minus the mean of {N_RANDOM} random nets, per seed "
            f"{', '.join(f'{d:+.1f}' for d in diffs)}, mean {statistics.fmean(diffs):+.1f} "
            f"points (target: at least +5): "
            f"{verdict(statistics.fmean(diffs) >= 5, len(diffs), len(seeds))}"
        )
    g = bp.gap(space, fixed, len(seeds))
    if g is not None:
        out.append(
            f"- the gap: best net without {space.op} ({arch_text(arch_of_key(g.best_without))}, "
            f"{ablation.mean_std(bp.acc(fixed[g.best_without]))}) against the same net with "
            f"one decoder block {space.op} (the weaker change, per seed "
            f"{', '.join(f'{d:+.1f}' for d in g.per_seed)}): {g.gap:+.1f} points (target: at "
            f"least +15): {verdict(g.gap >= 15)}"
        )
    else:
        out.append("- the gap: not measured yet (unfinished runs)")
    return out


def lscpu_model() -> str:
    """`lscpu`'s model name (the machine line of the tables)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def settings_text(space: bp.Space) -> str:
    s = search_settings(space.spec)
    keys = ("warmup", "epochs", "update_ratio", "batch", "lr", "theta_lr", "estimator")
    keys += ("temperature", "temperature_end", "patience", "d_model")
    return ", ".join(f"{k} = {getattr(s, k)}" for k in keys)


def report(spaces: Sequence[bp.Space], results: Path, seeds: Sequence[int]) -> str:
    """The generated part of docs/results.md's section "Does the search find it?"."""
    out = [
        BEGIN,
        "<!-- generated by bench/planted_search.py from its search.jsonl and results.jsonl; "
        "edit the script, not this block -->",
        "",
        f"Command: `nice python bench/planted_search.py --jobs 2 --seeds "
        f"{','.join(map(str, seeds))}` (resumable; `--report` only rewrites this block)  ",
        f"Machine: {os.cpu_count()} cores (nproc), {lscpu_model()} (lscpu); 2 units at a time, "
        "1 torch thread each, on a machine shared with other jobs  ",
        "Every accuracy: VQA accuracy (%) on the planted world's **test** split of best.pt, "
        "each net trained from scratch at its spec's `train { }` budget; mean ± sample std "
        f"over the seeds {', '.join(map(str, seeds))}. Random nets of seed s: "
        f"`sample_architectures(.., {N_RANDOM}, {RANDOM_SEED} + s)` (drawn independently, so "
        "a net can be drawn twice and then counts twice), each trained with seed s.",
        "",
    ]
    for space in spaces:
        searched = search_records(space, results, seeds)
        fixed = bp.records(space, results, seeds)
        unit_min = sum(r["seconds"] for by in (searched, fixed) for rs in by.values() for r in rs)
        out += [
            f"### `{space.task}`: specs/planted-{space.task}.mmnas",
            "",
            f"Search settings: {settings_text(space)}  ",
            f"Sum of per-unit wall times (search + train + eval, or train + eval; including "
            f"units bench/planted.py ran): {unit_min / 60:.1f} min",
            "",
            *targets(space, searched, fixed, seeds),
            "",
            *summary_table(space, searched, fixed, seeds),
            "",
            *seed_table(space, searched, fixed, seeds),
            "",
        ]
    out.append(END)
    return "\n".join(out)


def write_doc(doc: Path, block: str) -> None:
    """Put the block between this bench's markers of `doc` (bench/planted.py's writer)."""
    bp.write_doc(doc, block, (BEGIN, END), heading="## Does the search find it?\n\n")


# --------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", choices=world.TASKS, action="append", help="default: both")
    p.add_argument("--seeds", help="comma-separated seeds (default 0,1,2,3,4; --tiny: 0)")
    p.add_argument("--jobs", type=int, default=2, help="units run at once (1 CPU thread each)")
    p.add_argument("--no-op-pool", action="store_true", help="also search the pool without the op")
    p.add_argument("--no-gap", action="store_true", help="do not train the gap's nets")
    p.add_argument("--tiny", action="store_true", help="tiny worlds and nets (the tests)")
    p.add_argument("--results", type=Path, help="results folder (default runs/planted[-tiny])")
    p.add_argument("--doc", type=Path, help="default docs/results.md; --tiny: RESULTS/results.md")
    p.add_argument("--report", action="store_true", help="only rewrite the tables")
    p.add_argument("--inprocess", action="store_true", help="run the CLI in this process")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    seeds = (
        tuple(int(s) for s in args.seeds.split(","))
        if args.seeds
        else ((0,) if args.tiny else bp.SEEDS)
    )
    results = args.results or ROOT / "runs" / ("planted-tiny" if args.tiny else "planted")
    doc = args.doc or (results / "results.md" if args.tiny else DOC)
    failures: list[str] = []
    if not args.report:
        spaces = [bp.load_space(task, args.tiny) for task in args.task or world.TASKS]
        failures += execute(spaces, results, seeds, args)
    write_doc(doc, report([bp.load_space(t, args.tiny) for t in world.TASKS], results, seeds))
    print(f"tables: {doc}", flush=True)
    for f in failures:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
