"""The planted tasks' gaps (issue 12, part 1): every concrete net of each planted space, trained.

A planted spec (specs/planted-rsa.mmnas, specs/planted-ga.mmnas; docs/planted.md) is a
search space over a world in which one op decides the answer. This runner enumerates every
concrete architecture of each space (32 each: 1 encoder block over {SA, FFN}, 2 decoder
blocks over {SA, RSA, GA, FFN}), trains each from scratch at the spec's own `train { }`
budget with every seed, and evaluates best.pt on the test split, through the project's
commands (bench/ablation.py's `Runner`):

    mmnasdsl train RESULTS/<task>/<arch>/<seed>/net.mmnas -o .../train --data DATA --seed S
    mmnasdsl eval  <same spec> .../train/best.pt --split test --data DATA

Each finished (arch, seed) appends a line to RESULTS/<task>/results.jsonl; a rerun skips
finished units and resumes unfinished ones from their checkpoints. The tables (mean ± std
per architecture, the gap: the best net without the planted op against the same net with
one decoder block changed to it) are written between markers in docs/planted.md.

    nice python bench/planted.py [--task rsa|ga] [--seeds 0,1,2,3,4] [--jobs 2] [--report]
                                 [--archs sa/sa-rsa,...] [--results DIR] [--doc docs/planted.md]
                                 [--tiny]

`--tiny` shrinks the worlds, nets and budgets (the tests).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation  # bench/ablation.py: Runner, run_all and the report helpers

import mmnasdsl
from mmnasdsl.data import planted
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.settings import data_settings, train_settings
from mmnasdsl.lang.spec import Arg, DataDecl, SectionDecl, Spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = {task: ROOT / "specs" / f"planted-{task}.mmnas" for task in planted.TASKS}
OP = {"rsa": "RSA", "ga": "GA"}  # the op each world plants
DOC = ROOT / "docs" / "planted.md"
BEGIN, END = "<!-- planted:begin -->", "<!-- planted:end -->"
SEEDS = (0, 1, 2, 3, 4)


# ------------------------------------------------------------------------------ the space


@dataclass(frozen=True)
class Space:
    """One planted spec as run: the space, its data, and a fingerprint of both."""

    task: str
    spec: Spec  # the search space, at the run's sizes
    tiny: bool = False

    @property
    def op(self) -> str:
        return OP[self.task]

    def fingerprint(self) -> str:
        """What a trained net's result depends on: the spec's canonical text (model, data,
        train budget) without its `search { }` section, and the planted world's version.
        Seeds are not part of it; nor are the search settings (a fixed net is trained the
        same whatever they are)."""
        text = format_spec(without_search(self.spec).model_copy(update={"comments": ()}))
        key = json.dumps({"spec": text, "world": planted.WORLD_VERSION})
        return hashlib.sha1(key.encode()).hexdigest()[:10]


def load_space(task: str, tiny: bool = False) -> Space:
    """specs/planted-<task>.mmnas; `tiny` (the tests): encoder SA, decoder pool {FFN, op}
    (4 nets), 40 scenes, d = 16, 1 epoch."""
    spec = mmnasdsl.load(SPECS[task])
    if tiny:
        spec = ablation.with_pool(spec, "enc", ("SA",))
        spec = ablation.with_pool(spec, "dec", ("FFN", OP[task]))
        spec = ablation.with_options(spec, "model", {"d_model": 16, "heads": 2})
        spec = ablation.with_options(spec, "search", {"d_model": 16})
        spec = ablation.with_options(
            spec, "train", {"epochs": 1, "batch": 16, "warmup": 0, "decay_at": []}
        )
        spec = with_scenes(spec, 40)
    return Space(task, spec, tiny)


def without_search(spec: Spec) -> Spec:
    """The spec without its `search { }` section."""
    stmts = tuple(
        s for s in spec.statements if not (isinstance(s, SectionDecl) and s.kind == "search")
    )
    return spec.model_copy(update={"statements": stmts})


def with_scenes(spec: Spec, scenes: int) -> Spec:
    """The spec's `data planted(...)` with `scenes` train scenes (task and seed kept)."""
    call = spec.data.call if spec.data else None
    assert call is not None and call.name == "planted", "a planted spec reads planted data"
    args = (*(a for a in call.args if a.key != "scenes"), Arg(key="scenes", value=scenes))
    stmts = tuple(
        s.model_copy(update={"call": call.model_copy(update={"args": args})})
        if isinstance(s, DataDecl)
        else s
        for s in spec.statements
    )
    return spec.model_copy(update={"statements": stmts})


def architectures(space: Spec) -> list[dict[str, list[str]]]:
    """Every concrete architecture of the space, as op lists per stack, in block order."""
    blocks = space.blocks()
    out = []
    for ops in itertools.product(*(b.choices for b in blocks)):
        arch: dict[str, list[str]] = {}
        for b, op in zip(blocks, ops, strict=True):
            arch.setdefault(b.stack, []).append(op)
        out.append(arch)
    return out


def arch_key(arch: dict[str, list[str]]) -> str:
    """`sa/rsa-ffn`: encoder ops / decoder ops (also the folder of its runs)."""
    return "/".join("-".join(ops).lower() for ops in arch.values())


def arch_label(arch: dict[str, list[str]]) -> str:
    return " / ".join(" ".join(ops) for ops in arch.values())


def has_op(arch: dict[str, list[str]], op: str) -> bool:
    return any(op in ops for ops in arch.values())


def cells(space: Space) -> dict[str, ablation.Cell]:
    """One cell (a concrete net to train) per architecture of the space, by key."""
    out = {}
    for arch in architectures(space.spec):
        net = space.spec.replace_stacks(arch)
        key = arch_key(arch)
        out[key] = ablation.Cell(key, arch_label(arch), net, False, (0, 0))
    return out


# ---------------------------------------------------------------------------- running


class PlantedRunner(ablation.Runner):
    """bench/ablation.py's Runner; the nets say where they come from, and records keep the
    per-epoch wall times. Its `sizes` is the `Space` (what results are keyed by)."""

    @property
    def space(self) -> Space:
        return self.sizes  # type: ignore[return-value]

    def write_net(self, cell: ablation.Cell, folder: Path) -> Path:
        net = folder / "net.mmnas"
        head = (
            f"# bench/planted.py: {cell.label}, one net of the space "
            f"specs/planted-{self.space.task}.mmnas\n"
        )
        net.write_text(head + format_spec(cell.spec), encoding="utf-8")
        return net

    def record(
        self, cell: ablation.Cell, seed: int, net: Path, folder: Path, seconds: float
    ) -> dict[str, Any]:
        rec = super().record(cell, seed, net, folder, seconds)
        train = json.loads((folder / "train" / "metrics.json").read_text())
        rec["epoch_seconds"] = [e["seconds"] for e in train["epochs"]]
        rec["has_op"] = has_op(rec["arch"], self.space.op)
        return rec


def data_folder(results: Path, space: Space) -> Path:
    """RESULTS/data/<task>-<scenes>-<seed>-v<world>: generated once, read by every unit."""
    s = data_settings(space.spec)
    return results / "data" / f"{space.task}-{s.scenes}-{s.seed}-v{planted.WORLD_VERSION}"


def ensure_data(results: Path, space: Space) -> Path:
    folder = data_folder(results, space)
    if not (folder / "test.h5").is_file():
        s = data_settings(space.spec)
        planted.generate(space.task, folder, s.scenes, s.seed)
    return folder


def make_runner(space: Space, results: Path, **kwargs: Any) -> PlantedRunner:
    folder = results / space.task
    folder.mkdir(parents=True, exist_ok=True)
    return PlantedRunner(space, folder, ensure_data(results, space), **kwargs)  # type: ignore[arg-type]


def execute(space: Space, results: Path, seeds: Sequence[int], args: argparse.Namespace) -> list:
    """Run every (architecture, seed) of one space not yet recorded; seed-major order, so
    one seed of every net finishes first."""
    session = {"start": time.time(), "argv": args.argv, "sizes": space.fingerprint()}
    runner = make_runner(
        space,
        results,
        inprocess=args.inprocess,
        log=lambda m: print(time.strftime("%H:%M:%S"), space.task, m, flush=True),
        session=session,
    )
    chosen = select(cells(space), args.archs)
    units = [(c, s) for s in seeds for c in chosen]
    try:
        return ablation.run_all(runner, units, 1 if args.inprocess else args.jobs)
    finally:
        runner.mark_session()


def select(by_key: dict[str, ablation.Cell], keys: str | None) -> list[ablation.Cell]:
    """The cells named by `--archs` (comma-separated keys like `sa/sa-rsa`; all if None)."""
    if not keys:
        return list(by_key.values())
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in by_key]
    if unknown:
        raise SystemExit(f"unknown architecture(s) {', '.join(unknown)}; e.g. {next(iter(by_key))}")
    return [by_key[k] for k in wanted]


# -------------------------------------------------------------------------- reporting


def records(space: Space, results: Path, seeds: Sequence[int]) -> dict[str, list[dict]]:
    """The recorded runs of this space (its fingerprint), by architecture key."""
    recs = [
        r
        for r in ablation.read_results(results / space.task / "results.jsonl")
        if r.get("sizes") == space.fingerprint()
    ]
    return ablation.by_cell(recs, seeds)


def acc(recs: list[dict[str, Any]]) -> list[float]:
    return [float(r["test"]["accuracy"]) for r in recs]


def mean(recs: list[dict[str, Any]]) -> float:
    return statistics.fmean(acc(recs)) if recs else float("nan")


def with_op(arch: dict[str, list[str]], op: str, block: int) -> dict[str, list[str]]:
    """The architecture with decoder block `block` changed to `op`."""
    dec = list(arch["decoder"])
    dec[block] = op
    return {**arch, "decoder": dec}


@dataclass
class Gap:
    """The measured gap of one space (None: not enough finished runs)."""

    best_without: str  # arch key
    changed: list[str]  # the best-without net with one decoder block changed to the op
    best_with: str
    gap: float  # mean over seeds, against the weaker of `changed`
    per_seed: list[float]


def gap(space: Space, by: dict[str, list[dict]], want: int) -> Gap | None:
    """Best net without the op (highest mean test accuracy over the seeds) against the same
    net with one decoder block changed to the op; the smaller of the two changes counts."""
    archs = {arch_key(a): a for a in architectures(space.spec)}
    done = {k: v for k, v in by.items() if len(v) >= want and k in archs}
    without = [k for k in done if not has_op(archs[k], space.op)]
    with_ = [k for k in done if has_op(archs[k], space.op)]
    if not without or not with_:
        return None
    best = max(without, key=lambda k: mean(done[k]))
    changed = [arch_key(with_op(archs[best], space.op, b)) for b in range(2)]
    if any(k not in done for k in changed):
        return None
    weaker = min(changed, key=lambda k: mean(done[k]))
    per_seed = [
        a - b for a, b in zip(acc(done[weaker]), acc(done[best]), strict=True)
    ]  # by_cell sorts by seed
    return Gap(
        best, changed, max(with_, key=lambda k: mean(done[k])), statistics.fmean(per_seed), per_seed
    )


def table(space: Space, by: dict[str, list[dict]], want: int) -> str:
    """Every architecture: test accuracy mean ± std over the seeds, each seed, time."""
    lines = [
        ablation.header(
            (
                "encoder / decoder",
                space.op,
                "seeds",
                "params",
                "test accuracy",
                "each seed",
                "s per run",
                "s per epoch",
            )
        )
    ]
    archs = architectures(space.spec)
    archs.sort(key=lambda a: -mean(by.get(arch_key(a), [])) if by.get(arch_key(a)) else 1e9)
    for arch in archs:
        recs = by.get(arch_key(arch), [])
        status = f"{len(recs)}/{want}" + ("" if len(recs) >= want else " (unfinished)")
        if not recs:
            lines.append(
                f"| {arch_label(arch)} | {'yes' if has_op(arch, space.op) else 'no'} | "
                f"{status} | – | not run | – | – | – |"
            )
            continue
        each = ", ".join(f"{a:.1f}" for a in acc(recs))
        run_s = statistics.fmean(r["seconds"] for r in recs)
        epoch_s = statistics.fmean(s for r in recs for s in r["epoch_seconds"])
        lines.append(
            f"| {arch_label(arch)} | {'yes' if has_op(arch, space.op) else 'no'} | {status} | "
            f"{ablation.params_cell(recs)} | {ablation.mean_std(acc(recs))} | {each} | "
            f"{run_s:.0f} | {epoch_s:.1f} |"
        )
    return "\n".join(lines)


def summary(space: Space, by: dict[str, list[dict]], want: int) -> list[str]:
    g = gap(space, by, want)
    if g is None:
        return ["Gap: not yet measured (unfinished runs)."]
    archs = {arch_key(a): a for a in architectures(space.spec)}

    def line(what: str, key: str) -> str:
        return f"| {what} | {arch_label(archs[key])} | {ablation.mean_std(acc(by[key]))} |"

    n_without = sum(not has_op(a, space.op) for a in archs.values())
    full = sum(len(by.get(k, [])) >= want for k, a in archs.items() if not has_op(a, space.op))
    among = (
        f"the best of the {n_without} of {len(archs)} architectures without {space.op}"
        if full == n_without
        else f"the best of the {full} of the {n_without} architectures without {space.op} "
        f"that ran every seed (bench/planted_search.py picks one by its first-seed accuracy "
        f"among all {n_without}; the others ran fewer seeds)"
    )
    return [
        ablation.header(("net", "encoder / decoder", "test accuracy")),
        line(f"best without {space.op}", g.best_without),
        *(
            line(f"the same with decoder block {b + 1} = {space.op}", k)
            for b, k in enumerate(g.changed)
        ),
        line(f"best with {space.op}", g.best_with),
        "",
        f"**Gap: {g.gap:+.1f} points** (mean over seeds; per seed "
        f"{', '.join(f'{d:+.1f}' for d in g.per_seed)}): the weaker of the two single-block "
        f"changes against {among}; {n_without} of {len(archs)} architectures "
        f"({100 * n_without / len(archs):.0f} % of the space) lack {space.op}.",
    ]


def sessions_of(space: Space, results: Path) -> list[dict[str, Any]]:
    """The runner's sessions on this space (the last line of each session holds its end)."""
    return list(
        {
            s["start"]: s
            for s in ablation.read_results(results / space.task / "sessions.jsonl")
            if s.get("sizes") == space.fingerprint()
        }.values()
    )


def report(spaces: Sequence[Space], results: Path, seeds: Sequence[int]) -> str:
    """The generated part of docs/planted.md."""
    out = [
        BEGIN,
        "<!-- generated by bench/planted.py from its results.jsonl; edit the script, "
        "not this block -->",
        "",
        f"Machine: {ablation.machine()}  ",
        "Every number: VQA accuracy (%) on the planted world's **test** split of best.pt "
        "(the epoch with the best val accuracy), mean ± sample std over the seeds "
        f"{', '.join(map(str, seeds))}; each net trained from scratch at its spec's "
        "`train { }` budget; 's per run' = wall time of `train` + `eval --split test` "
        "(process start-up included), 's per epoch' = one training epoch and its val "
        "evaluation; 2 runs at a "
        "time on a shared machine.",
        "",
    ]
    for space in spaces:
        by = records(space, results, seeds)
        ss = sessions_of(space, results)
        argv = dict.fromkeys(" ".join(["nice python bench/planted.py", *s["argv"]]) for s in ss)
        unit_min = sum(r["seconds"] for recs in by.values() for r in recs) / 60
        t = train_settings(space.spec)
        d = data_settings(space.spec)
        out += [
            f"### `{space.task}`: specs/planted-{space.task}.mmnas",
            "",
            f"Command: {', '.join(f'`{a}`' for a in argv) or '–'}  ",
            f"Wall time: {ablation.wall_time(ss)} (sum of per-run times: {unit_min:.1f} min)  ",
            f"Data: `data planted(task = {space.task}, scenes = {d.scenes}, seed = {d.seed})`, "
            f"world version {planted.WORLD_VERSION}; train: {t.epochs} epochs, batch {t.batch}, "
            f"lr {t.lr}; fingerprint `{space.fingerprint()}`",
            "",
            *summary(space, by, len(seeds)),
            "",
            table(space, by, len(seeds)),
            "",
        ]
    out.append(END)
    return "\n".join(out)


def write_doc(
    doc: Path, block: str, markers: tuple[str, str] = (BEGIN, END), heading: str = ""
) -> None:
    """Put the generated block (which starts and ends with `markers`) into `doc` between
    them, keeping the rest; appended under `heading` when the markers are not there yet."""
    begin, end = markers
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Planted tasks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + heading + block + "\n"
    doc.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", choices=planted.TASKS, action="append", help="default: both")
    p.add_argument("--seeds", help="comma-separated model seeds (default 0,1,2,3,4; --tiny: 0)")
    p.add_argument(
        "--archs", help="only these architectures, comma-separated keys like sa/sa-rsa,sa/ga-rsa"
    )
    p.add_argument("--jobs", type=int, default=2, help="units run at once (1 CPU thread each)")
    p.add_argument("--tiny", action="store_true", help="tiny worlds and nets, one seed (tests)")
    p.add_argument("--results", type=Path, help="results folder (default runs/planted[-tiny])")
    p.add_argument(
        "--doc",
        type=Path,
        help="markdown file for the tables (default docs/planted.md; --tiny: RESULTS/planted.md)",
    )
    p.add_argument("--report", action="store_true", help="only rewrite the tables")
    p.add_argument(
        "--inprocess", action="store_true", help="run the CLI in this process (implies --jobs 1)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    seeds = (
        tuple(int(s) for s in args.seeds.split(","))
        if args.seeds
        else ((0,) if args.tiny else SEEDS)
    )
    results = args.results or ROOT / "runs" / ("planted-tiny" if args.tiny else "planted")
    doc = args.doc or (results / "planted.md" if args.tiny else DOC)
    spaces = [load_space(t, args.tiny) for t in args.task or planted.TASKS]
    failures: list[str] = []
    if not args.report:
        for space in spaces:
            failures += execute(space, results, seeds, args)
    all_spaces = [load_space(t, args.tiny) for t in planted.TASKS]
    write_doc(doc, report(all_spaces, results, seeds))
    print(f"tables: {doc}", flush=True)
    for f in failures:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
