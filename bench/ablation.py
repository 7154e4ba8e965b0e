"""The paper's Table 2 ablations (Yu et al., ACM MM 2020, §5.3), reproduced on `shapes`.

Three tables, each cell a mean and spread over seeds, all from specs/shapes-vqa.mmnas at a
fixed small width, every network run through the project's own commands
(`mmnasdsl search`, `mmnasdsl train`, `mmnasdsl eval`):

a. decoder pool ablation (Table 2a): {GA,FFN}, {SA,GA,FFN}, {RSA,GA,FFN}, {SA,RSA,GA,FFN};
   search, then train the searched net from scratch;
b. random vs searched (Table 2c): the full-pool searched net vs random nets of that space;
c. MCAN vs searched at two depths (Table 2b), with parameter counts (mmnasdsl.compile.graph).

Spec variants are built from the base spec's AST (pools, stack depths, schedules), never
copied by hand. Every (cell, seed) runs in RESULTS/<cell>/<seed>/ (space.mmnas or net.mmnas,
search/, train/ run directories) and, when finished, appends one line to
RESULTS/results.jsonl. A rerun skips finished units and resumes unfinished ones from their
checkpoints (`--resume`), so an interrupted run continues where it stopped. At the end (and
with `--report` alone) the tables are written between markers in docs/results.md; the
rest of that file (the reading) is kept.

    nice python bench/ablation.py [--only a|b|c] [--seeds 0,1,2] [--jobs 2] [--tiny]
                                  [--results DIR] [--doc docs/results.md] [--report]
    nice python bench/ablation.py --probe     # side experiments (PROBES): RSA init, more data

Test-split accuracy of best.pt (the epoch with the best val accuracy) is reported. The run
behind docs/results.md: `--jobs 2 --seeds 0,1,2,3,4` (about 41 min on 2 shared cores).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mmnasdsl
from mmnasdsl.data.shapes import FAMILY_SHARE, WORLD_VERSION
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.spec import (
    Arg,
    DataDecl,
    Ident,
    ListValue,
    ModelDecl,
    Option,
    PoolDecl,
    Ref,
    Repeat,
    SectionDecl,
    Spec,
    StackDecl,
)

ROOT = Path(__file__).resolve().parent.parent
BASE_SPEC = ROOT / "specs" / "shapes-vqa.mmnas"
DOC = ROOT / "docs" / "results.md"
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"

POOLS: dict[str, tuple[str, ...]] = {  # Table 2a rows, in the paper's order
    "ga-ffn": ("GA", "FFN"),
    "sa-ga-ffn": ("SA", "GA", "FFN"),
    "rsa-ga-ffn": ("RSA", "GA", "FFN"),
    "full": ("SA", "RSA", "GA", "FFN"),
}
FAMILIES = ("exist", "count", "query", "spatial", "nearest", "compare")
TYPES = ("yes/no", "number", "other")


# ------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Everything that sets the cost of the run; its hash names a results folder's contents."""

    scenes: int  # shapes train scenes (5 questions each; val = test = scenes / 4)
    d_model: int
    heads: int
    depth: tuple[int, int]  # (M, N) encoder/decoder blocks of tables a and b
    mcan: tuple[int, ...]  # table c: MCAN-k, i.e. (M, N) = (2k, 3k)
    search: dict[str, Any]  # search { } options
    train: dict[str, Any]  # train { } options
    seeds: tuple[int, ...] = (0, 1, 2)
    n_random: int = 3  # random nets of table b
    arch_seed: int = 12345  # draws the random nets (the same for every model seed)
    test_scenes: int | None = None  # test split scenes (None: scenes / 4, as `mmnasdsl data`)
    world: int = WORLD_VERSION  # the shapes generator the data came from

    def fingerprint(self) -> str:
        """A short hash of the sizes (seeds excluded: adding a seed keeps earlier results)."""
        d = {k: v for k, v in asdict(self).items() if k != "seeds"}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


FULL = Sizes(
    scenes=800,
    d_model=64,
    heads=4,
    depth=(4, 6),
    mcan=(1, 2),
    search={
        "warmup": 2,
        "epochs": 8,
        "update_ratio": 2,
        "batch": 64,
        "lr": 0.002,
        "theta_lr": 0.3,
        "patience": 3,
    },
    train={"epochs": 12, "batch": 64, "lr": 0.002, "warmup": 1, "decay_at": [9], "decay": 0.2},
    test_scenes=1000,
)
TINY = Sizes(
    scenes=10,
    d_model=16,
    heads=2,
    depth=(2, 3),
    mcan=(1,),
    search={"warmup": 1, "epochs": 1, "update_ratio": 2, "batch": 16, "patience": 1},
    train={"epochs": 1, "batch": 16, "lr": 0.002, "warmup": 0, "decay_at": []},
    seeds=(0,),
    n_random=2,
)


# ------------------------------------------------------------------------ spec variants


def _value(v: Any) -> Any:
    """A Python value as a spec value (lists become `[a, b]`)."""
    return ListValue(items=tuple(v)) if isinstance(v, list | tuple) else v


def with_options(spec: Spec, kind: str, values: dict[str, Any]) -> Spec:
    """The spec with `values` set in its `model` or `search`/`train` section (others kept)."""

    def update(options: tuple[Option, ...]) -> tuple[Option, ...]:
        kept = [o for o in options if o.key not in values]
        return (*kept, *(Option(key=k, value=_value(v)) for k, v in values.items()))

    stmts = []
    for s in spec.statements:
        if (isinstance(s, ModelDecl) and kind == "model") or (
            isinstance(s, SectionDecl) and s.kind == kind
        ):
            s = s.model_copy(update={"options": update(s.options)})
        stmts.append(s)
    return spec.model_copy(update={"statements": tuple(stmts)})


def with_pool(spec: Spec, name: str, ops: Sequence[str]) -> Spec:
    """The spec with pool `name` holding `ops` (Table 2a's decoder pools)."""
    stmts = tuple(
        s.model_copy(update={"members": tuple(Ref(name=o) for o in ops)})
        if isinstance(s, PoolDecl) and s.name == name
        else s
        for s in spec.statements
    )
    return spec.model_copy(update={"statements": stmts})


def with_depth(spec: Spec, encoder: int, decoder: int) -> Spec:
    """The spec with `enc * M` and `dec * N` stacks (the pools named in the base spec)."""
    depth = {"encoder": ("enc", encoder), "decoder": ("dec", decoder)}
    stmts = []
    for s in spec.statements:
        if isinstance(s, StackDecl):
            pool, n = depth[s.kind]
            s = s.model_copy(update={"body": (Repeat(body=(Ref(name=pool),), count=n),)})
        stmts.append(s)
    return spec.model_copy(update={"statements": tuple(stmts)})


def with_data(spec: Spec, scenes: int) -> Spec:
    """The spec's `data shapes(scenes = N, seed = 0)`, so a cell's spec says what it read."""
    call = spec.data.call if spec.data else None
    assert call is not None and call.name == "shapes", "the base spec reads the shapes world"
    args = (Arg(key="scenes", value=scenes), Arg(key="seed", value=0))
    stmts = tuple(
        s.model_copy(update={"call": call.model_copy(update={"args": args})})
        if isinstance(s, DataDecl)
        else s
        for s in spec.statements
    )
    return spec.model_copy(update={"statements": stmts})


def base_spec(sizes: Sizes) -> Spec:
    """specs/shapes-vqa.mmnas at the run's width, data size and schedules."""
    spec = mmnasdsl.load(BASE_SPEC).model_copy(update={"comments": ()})  # they describe the base
    spec = with_options(spec, "model", {"d_model": sizes.d_model, "heads": sizes.heads})
    spec = with_options(spec, "search", {"d_model": sizes.d_model, **sizes.search})
    spec = with_options(spec, "train", sizes.train)
    return with_data(spec, sizes.scenes)


def mcan(spec: Spec, k: int) -> Spec:
    """MCAN-k (paper footnote 3): encoder (SA FFN) * k, decoder (SA GA FFN) * k."""
    return spec.replace_stacks({"encoder": ["SA", "FFN"] * k, "decoder": ["SA", "GA", "FFN"] * k})


# -------------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One row of a table: a search space to search then train, or one net to train."""

    key: str  # also its folder under RESULTS
    label: str
    spec: Spec
    searched: bool
    depth: tuple[int, int]


def random_nets(space: Spec, n: int, seed: int) -> list[Spec]:
    """`n` uniform architectures of the space (mmnasdsl.search.sample_architectures)."""
    from mmnasdsl.search import sample_architectures

    blocks = space.blocks()
    archs = sample_architectures([len(b.choices) for b in blocks], n, seed)
    nets = []
    for arch in archs:
        ops: dict[str, list[str]] = {"encoder": [], "decoder": []}
        for b, i in zip(blocks, arch, strict=True):
            ops[b.stack].append(b.choices[i])
        nets.append(space.replace_stacks(ops))
    return nets


def all_cells(sizes: Sizes) -> dict[str, Cell]:
    """Every cell of the three tables, by key (a cell shared by two tables appears once)."""
    base = base_spec(sizes)
    m, n = sizes.depth
    cells = [
        Cell(
            f"a/{k}",
            "{" + ",".join(ops) + "}",
            with_depth(with_pool(base, "dec", ops), m, n),
            True,
            (m, n),
        )
        for k, ops in POOLS.items()
    ]
    space = with_depth(base, m, n)
    cells += [
        Cell(f"b/random-{i + 1}", f"random {i + 1}", net, False, (m, n))
        for i, net in enumerate(random_nets(space, sizes.n_random, sizes.arch_seed))
    ]
    for k in sizes.mcan:
        cells.append(Cell(f"c/mcan-{k}", f"MCAN-{k}", mcan(base, k), False, (2 * k, 3 * k)))
        if (2 * k, 3 * k) != sizes.depth:
            cells.append(
                Cell(
                    f"c/searched-{2 * k}x{3 * k}",
                    "MMnasNet",
                    with_depth(base, 2 * k, 3 * k),
                    True,
                    (2 * k, 3 * k),
                )
            )
    return {c.key: c for c in cells}


def searched_key(sizes: Sizes, depth: tuple[int, int]) -> str:
    """The cell of the full-pool search at `depth` (table a's when the depth is the base)."""
    return "a/full" if depth == sizes.depth else f"c/searched-{depth[0]}x{depth[1]}"


def table_cells(sizes: Sizes, table: str) -> list[str]:
    """The cell keys a table reads, in row order."""
    if table == "a":
        return [f"a/{k}" for k in POOLS]
    if table == "b":
        return ["a/full", *(f"b/random-{i + 1}" for i in range(sizes.n_random))]
    keys = []
    for k in sizes.mcan:
        keys += [f"c/mcan-{k}", searched_key(sizes, (2 * k, 3 * k))]
    return keys


# -------------------------------------------------------------------------- running


@dataclass
class Runner:
    """Runs (cell, seed) units through the CLI and records finished ones in results.jsonl."""

    sizes: Sizes
    results: Path
    data: Path
    inprocess: bool = False  # call the CLI in this process (the tests) instead of subprocesses
    log: Callable[[str], None] = print
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: dict[str, Any] = field(default_factory=dict)  # {start, argv, sizes} of this run

    def mark_session(self) -> None:
        """Append this session's end-so-far to RESULTS/sessions.jsonl: a run that is killed
        still counts up to its last finished unit (`sessions` keeps the last line per start)."""
        if self.session:
            with self.lock, (self.results / "sessions.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps({**self.session, "end": time.time()}) + "\n")

    @property
    def results_file(self) -> Path:
        return self.results / "results.jsonl"

    def finished(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The recorded results of these sizes, by (cell, seed)."""
        return {
            (r["cell"], r["seed"]): r
            for r in read_results(self.results_file)
            if r.get("sizes") == self.sizes.fingerprint()
        }

    def cli(self, *args: str | Path) -> None:
        """One `mmnasdsl` command; raises when it fails (its stderr tail in the message)."""
        argv = [str(a) for a in args]
        if self.inprocess:
            from mmnasdsl.cli import app

            app(args=argv, standalone_mode=False)
            return
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "mmnasdsl", *argv],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mmnasdsl {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")

    def run_unit(self, cell: Cell, seed: int) -> dict[str, Any]:
        """Search (if the cell is a space), train, evaluate on test; record and return."""
        t0 = time.perf_counter()
        folder = self.results / cell.key / str(seed)
        folder.mkdir(parents=True, exist_ok=True)
        net = self.search(cell, seed, folder) if cell.searched else self.write_net(cell, folder)
        train = folder / "train"
        self.cli("train", net, *self.run_flags(train, "last.pt", seed))
        if not (train / "eval-test.json").is_file():
            self.cli(
                "eval",
                net,
                train / "best.pt",
                "--split",
                "test",
                "--data",
                self.data,
                "--threads",
                "1",
                "-o",
                train / "predictions-test.json",
            )
        record = self.record(cell, seed, net, folder, time.perf_counter() - t0)
        with self.lock, self.results_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.mark_session()
        self.log(
            f"done {cell.key} seed {seed}: test accuracy {record['test']['accuracy']:.2f} "
            f"({record['seconds']:.0f}s)"
        )
        return record

    def run_flags(self, run_dir: Path, marker: str, seed: int) -> list[str | Path]:
        """-o RUNDIR (--resume when a checkpoint is there; a run killed before its first
        checkpoint is started again) and the shared flags."""
        resume = (run_dir / marker).is_file()
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)
        return [
            "-o",
            run_dir,
            "--data",
            self.data,
            "--seed",
            str(seed),
            "--threads",
            "1",
            "--device",
            "cpu",
            "-q",
            *(["--resume"] if resume else []),
        ]

    def search(self, cell: Cell, seed: int, folder: Path) -> Path:
        """`mmnasdsl search` the cell's space; returns the arch.mmnas it wrote."""
        space = folder / "space.mmnas"
        space.write_text(spec_text(cell), encoding="utf-8")
        self.cli("search", space, *self.run_flags(folder / "search", "checkpoint.pt", seed))
        return folder / "search" / "arch.mmnas"

    def write_net(self, cell: Cell, folder: Path) -> Path:
        net = folder / "net.mmnas"
        net.write_text(spec_text(cell), encoding="utf-8")
        return net

    def record(
        self, cell: Cell, seed: int, net: Path, folder: Path, seconds: float
    ) -> dict[str, Any]:
        """The results.jsonl line of a finished unit."""
        spec = mmnasdsl.load(net)
        train = json.loads((folder / "train" / "metrics.json").read_text())
        return {
            "cell": cell.key,
            "seed": seed,
            "sizes": self.sizes.fingerprint(),
            "arch": {b.stack: [] for b in spec.blocks()} | arch_of(spec),
            "params": params_of(spec, self.data),
            "test": json.loads((folder / "train" / "eval-test.json").read_text()),
            "val_best": train["best"],
            "best_epoch": train["best_epoch"],
            "seconds": seconds,
        }


def spec_text(cell: Cell) -> str:
    """A cell's spec file: a header saying where it comes from, then the canonical text."""
    return (
        f"# bench/ablation.py cell {cell.key} ({cell.label}): generated from "
        f"specs/shapes-vqa.mmnas\n{format_spec(cell.spec)}"
    )


def arch_of(spec: Spec) -> dict[str, list[str]]:
    """Op names per stack of a concrete spec."""
    out: dict[str, list[str]] = {}
    for b in spec.blocks():
        out.setdefault(b.stack, []).append(b.choices[0])
    return out


def params_of(spec: Spec, data: Path) -> int:
    """Parameters of a concrete net sized by the training split (mmnasdsl.compile.graph)."""
    from mmnasdsl.compile.graph import build_graph
    from mmnasdsl.data import open_split

    train = open_split(data, "train", spec)
    graph = build_graph(spec, vocab_size=len(train.vocab), num_answers=len(train.answers))
    return int(graph.params()["total"])


def read_results(path: Path) -> list[dict[str, Any]]:
    """results.jsonl's records (a line cut short by a kill is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def data_folder(results: Path, sizes: Sizes, mix: str | None = None) -> Path:
    """RESULTS/data/<what generated the stores>: another world, mix or size never reuses them."""
    parts = [f"world{sizes.world}", *([mix] if mix else []), str(sizes.scenes)]
    return results / "data" / "-".join([*parts, str(sizes.test_scenes or "default")])


def ensure_data(
    results: Path, sizes: Sizes, mix: str | None = None, share: Sequence[float] = FAMILY_SHARE
) -> Path:
    """The shapes VQA stores the cells (or a probe: question mix `share`, named `mix`) read,
    generated once, seed 0."""
    from mmnasdsl.data.shapes import generate

    folder = data_folder(results, sizes, mix)
    if not (folder / "test.h5").is_file():
        test = sizes.test_scenes
        generate("vqa", folder, sizes.scenes, seed=0, test_scenes=test, family_share=share)
    return folder


def run_all(runner: Runner, units: list[tuple[Cell, int]], jobs: int) -> list[str]:
    """Run the units not yet recorded, `jobs` at a time; returns the failures' messages."""
    done = runner.finished()
    todo = [(c, s) for c, s in units if (c.key, s) not in done]
    runner.log(
        f"{len(units) - len(todo)} of {len(units)} units already finished; "
        f"running {len(todo)} with {jobs} job(s)"
    )
    failures: list[str] = []

    def one(unit: tuple[Cell, int]) -> None:
        try:
            runner.run_unit(*unit)
        except Exception as exc:  # one failed unit must not stop the others
            failures.append(f"{unit[0].key} seed {unit[1]}: {exc}")
            runner.log(f"FAILED {failures[-1]}")

    if jobs <= 1 or runner.inprocess:
        for unit in todo:
            one(unit)
    else:
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, todo))
    return failures


# ---------------------------------------------------------------------------- reporting


def mean_std(values: Sequence[float]) -> str:
    """`mean ± std` (sample std; `±–` with one value)."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f} ± –"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def metric(record: dict[str, Any], key: str) -> float:
    """Test accuracy overall ("accuracy"), of an answer type or of a family."""
    test = record["test"]
    if key == "accuracy":
        return float(test["accuracy"])
    group = test["per_type"] if key in TYPES else test["per_family"]
    return float(group.get(key, float("nan")))


def row(
    lead: Sequence[str],
    recs: list[dict[str, Any]],
    keys: Iterable[str],
    want: int,
    extra: Sequence[str] = (),
) -> str:
    """One markdown row: leading labels, seeds done, extra columns, mean ± std per metric."""
    status = f"{len(recs)}/{want}" + ("" if len(recs) >= want else " (unfinished)")
    cells = (
        [mean_std([metric(r, k) for r in recs]) for k in keys]
        if recs
        else ["not run" for _ in keys]
    )
    return "| " + " | ".join([*lead, status, *extra, *cells]) + " |"


def header(cols: Sequence[str]) -> str:
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def by_cell(records: list[dict[str, Any]], seeds: Sequence[int]) -> dict[str, list[dict]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if r["seed"] in seeds:
            out.setdefault(r["cell"], []).append(r)
    return out


def arch_text(rec: dict[str, Any]) -> str:
    return " ".join(rec["arch"]["encoder"]) + " / " + " ".join(rec["arch"]["decoder"])


def prior_baseline(data: Path) -> dict[str, Any] | None:
    """Test accuracy of answering each question with its family's most frequent train answer:
    the level a net reaches from the question's wording alone (no image)."""
    from collections import Counter

    from mmnasdsl.data import open_split
    from mmnasdsl.heads._metrics import vqa_report

    if not (data / "test.h5").is_file():
        return None
    train, test = open_split(data, "train"), open_split(data, "test")
    top: dict[int, Counter[str]] = {}
    for i in range(len(train)):
        fam = int(train.question_family[i])
        top.setdefault(fam, Counter()).update([Counter(train.raw_answers(i)).most_common(1)[0][0]])
    guess = [top[int(f)].most_common(1)[0][0] for f in test.question_family]
    truth = [test.raw_answers(i) for i in range(len(test))]
    return dict(
        vqa_report(
            guess,
            truth,
            test.question_answer_type.tolist(),
            test.question_family.tolist(),
            test.families,
        )
    )


def table_a(sizes: Sizes, cells: dict[str, list[dict]], prior: dict[str, Any] | None) -> str:
    """Table 2a: overall, per answer type, per family, for each decoder pool."""
    keys = ("accuracy", *TYPES, *FAMILIES)
    lines = [header(("decoder pool", "seeds", "overall", *TYPES, *FAMILIES))]
    if prior is not None:
        lines.append(
            "| *family prior (no image)* | – | "
            + " | ".join(f"{metric({'test': prior}, k):.1f}" for k in keys)
            + " |"
        )
    for k, ops in POOLS.items():
        lines.append(
            row(["{" + ",".join(ops) + "}"], cells.get(f"a/{k}", []), keys, len(sizes.seeds))
        )
    lines += [
        "",
        "Decoder ops the search picked (all seeds, blocks counted): "
        + "; ".join(
            f"{{{','.join(ops)}}} {op_counts(cells.get(f'a/{k}', []), ops)}"
            for k, ops in POOLS.items()
        )
        + ".",
    ]
    return "\n".join(lines)


def op_counts(recs: list[dict[str, Any]], ops: Sequence[str]) -> str:
    """`GA 9, FFN 9`: how often each op of the pool is in the searched decoders."""
    if not recs:
        return "–"
    picked = [op for r in recs for op in r["arch"]["decoder"]]
    return ", ".join(f"{op} {picked.count(op)}" for op in ops)


def table_b(sizes: Sizes, cells: dict[str, list[dict]]) -> str:
    """Table 2c: the searched full-pool net vs random nets of the same space."""
    keys = ("accuracy", *TYPES, "query", "spatial", "nearest")
    lines = [header(("net", "seeds", "params", "overall", *TYPES, "query", "spatial", "nearest"))]
    want = len(sizes.seeds)
    lines.append(
        row(
            ["searched (full pool)"],
            cells.get("a/full", []),
            keys,
            want,
            [params_cell(cells.get("a/full", []))],
        )
    )
    pooled: list[dict[str, Any]] = []
    for i in range(sizes.n_random):
        recs = cells.get(f"b/random-{i + 1}", [])
        pooled += recs
        lines.append(row([f"random {i + 1}"], recs, keys, want, [params_cell(recs)]))
    lines.append(row(["random (all)"], pooled, keys, want * sizes.n_random, [params_cell(pooled)]))
    return "\n".join(lines)


def table_c(sizes: Sizes, cells: dict[str, list[dict]]) -> str:
    """Table 2b: MCAN-k vs the full-pool search at the same (M, N) = (2k, 3k)."""
    keys = ("accuracy", *TYPES)
    lines = [header(("(M, N)", "net", "seeds", "params", "overall", *TYPES))]
    for k in sizes.mcan:
        depth = f"({2 * k}, {3 * k})"
        for key, label in (
            (f"c/mcan-{k}", f"MCAN-{k}"),
            (searched_key(sizes, (2 * k, 3 * k)), "MMnasNet (searched)"),
        ):
            recs = cells.get(key, [])
            lines.append(row([depth, label], recs, keys, len(sizes.seeds), [params_cell(recs)]))
    return "\n".join(lines)


def table_rsa(records: list[dict[str, Any]]) -> str:
    """Every trained net of this run, grouped by whether its decoder has an RSA block: the
    search-free test of "the geometry families need RSA"."""
    keys = ("accuracy", "query", "spatial", "nearest")
    lines = [header(("decoder", "nets (cell × seed)", "overall", "query", "spatial", "nearest"))]
    for label, has in (("with RSA", True), ("without RSA", False)):
        recs = [r for r in records if ("RSA" in r["arch"]["decoder"]) == has]
        lines.append(
            row([label], recs, keys, len(recs)).replace(
                f"| {len(recs)}/{len(recs)} |", f"| {len(recs)} |"
            )
        )
    return "\n".join(lines)


def params_cell(recs: list[dict[str, Any]]) -> str:
    if not recs:
        return "–"
    values = sorted({r["params"] for r in recs})
    if len(values) == 1:
        return f"{values[0] / 1e3:.0f}k"
    return f"{values[0] / 1e3:.0f}k–{values[-1] / 1e3:.0f}k"


def arch_list(sizes: Sizes, cells: dict[str, list[dict]]) -> str:
    """The searched architectures, one line per (cell, seed): what the search picked."""
    lines = []
    for key in [f"a/{k}" for k in POOLS] + [
        searched_key(sizes, (2 * k, 3 * k)) for k in sizes.mcan
    ]:
        for r in cells.get(key, []):
            line = f"- `{key}` seed {r['seed']}: `{arch_text(r)}`"
            if line not in lines:
                lines.append(line)
    for i in range(sizes.n_random):
        for r in cells.get(f"b/random-{i + 1}", [])[:1]:
            lines.append(f"- `b/random-{i + 1}` (all seeds): `{arch_text(r)}`")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import torch

    return (
        f"{os.cpu_count()} CPU cores (nproc), {cpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}; shared with other jobs, runs under `nice`"
    )


def wall_time(sessions: list[dict[str, Any]]) -> str:
    """Total wall time of the runner's sessions on a results folder."""
    total = sum(s["end"] - s["start"] for s in sessions if "end" in s)
    return f"{total / 60:.1f} min over {len(sessions)} session(s)"


def commands(sessions: list[dict[str, Any]]) -> str:
    """The distinct command lines that ran units into this results folder."""
    lines = dict.fromkeys(" ".join(["nice python bench/ablation.py", *s["argv"]]) for s in sessions)
    return ", ".join(f"`{c}`" for c in lines) or "–"


def report(sizes: Sizes, results: Path) -> str:
    """The generated part of docs/results.md."""
    records = [
        r for r in read_results(results / "results.jsonl") if r.get("sizes") == sizes.fingerprint()
    ]
    cells = by_cell(records, sizes.seeds)
    sessions = list(
        {  # the last line of each session (by start) holds its end
            s["start"]: s
            for s in read_results(results / "sessions.jsonl")
            if s.get("sizes") == sizes.fingerprint()
        }.values()
    )
    unit_min = sum(r["seconds"] for r in records) / 60
    m, n = sizes.depth
    return "\n".join(
        [
            BEGIN,
            "<!-- generated by bench/ablation.py from its results.jsonl; edit the script, "
            "not this block -->",
            "",
            f"Command: {commands(sessions)}  ",
            f"Machine: {machine()}  ",
            f"Wall time: {wall_time(sessions)} (sum of per-unit times: {unit_min:.1f} min)  ",
            f"Sizes: `{json.dumps(asdict(sizes))}` (fingerprint `{sizes.fingerprint()}`)  ",
            "Every number: VQA accuracy (%) on the shapes **test** split of best.pt (the epoch "
            "with the best val accuracy), mean ± sample std over the seeds listed; "
            "'unfinished' = fewer seeds than asked, 'not run' = no seed finished.",
            "",
            f"### a. Decoder pool (paper Table 2a), (M, N) = ({m}, {n})",
            "",
            table_a(sizes, cells, prior_baseline(data_folder(results, sizes))),
            "",
            f"### b. Random vs searched (paper Table 2c), (M, N) = ({m}, {n}), full pool",
            "",
            table_b(sizes, cells),
            "",
            "### c. MCAN vs searched (paper Table 2b)",
            "",
            table_c(sizes, cells),
            "",
            "### RSA and the geometry families (all trained nets above)",
            "",
            table_rsa([r for recs in cells.values() for r in recs]),
            "",
            *probe_section(results.parent / f"{results.name}-probe"),
            "### The architectures (encoder / decoder)",
            "",
            arch_list(sizes, cells),
            END,
        ]
    )


def write_doc(doc: Path, block: str) -> None:
    """Put the generated block into `doc`, keeping the text outside the markers."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Results\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


# -------------------------------------------------------------------------------- probe

NEAREST_ONLY = tuple(float(f == "nearest") for f in FAMILIES)


@dataclass(frozen=True)
class Probe:
    """A side experiment next to the tables: fixed nets on one world, no search."""

    key: str  # its folder under RESULTS-probe
    title: str
    question: str  # what it answers, printed above its table
    scenes: int
    train: dict[str, Any]
    nets: tuple[str, ...]  # keys of `probe_nets`
    seeds: tuple[int, ...]
    family_share: tuple[float, ...] | None = None  # None: the world's own mix


PROBE_NETS = ("mcan-2", "rsa-2 reference init", "rsa-2 neutral init")
PROBES = (
    Probe(
        key="nearest",
        title="can RSA learn geometry? A world of `nearest` questions only",
        question="No net without RSA can see where objects are, so MCAN-2 stays near what "
        "the other objects' attributes allow; does RSA learn the geometry, at either init?",
        scenes=FULL.scenes,
        train={**FULL.train, "epochs": 15, "decay_at": [12]},
        nets=PROBE_NETS,
        seeds=(0, 1),
        family_share=NEAREST_ONLY,
    ),
    Probe(
        key="geometry-heavy",
        title="the tables' budget, 70 % `nearest` questions",
        question="Between the tables' world (a quarter `nearest`) and `nearest` alone: does "
        "RSA pull ahead when geometry dominates the mix?",
        scenes=FULL.scenes,
        train=FULL.train,
        nets=("mcan-2", "rsa-2 neutral init"),
        seeds=(0,),
        family_share=tuple(0.7 if f == "nearest" else 0.06 for f in FAMILIES),
    ),
    Probe(
        key="epochs",
        title="more epochs, the tables' world",
        question="Do the geometry families separate MCAN-2 from the same net with RSA when "
        "the nets train 3x the tables' epochs on the tables' data?",
        scenes=FULL.scenes,
        train={**FULL.train, "epochs": 36, "decay_at": [30]},
        nets=("mcan-2", "rsa-2 neutral init"),
        seeds=(0,),
    ),
    Probe(
        key="budget",
        title="more data, the tables' world",
        question="Do the geometry families separate MCAN-2 from the same net with RSA when "
        "the nets see 5x the tables' data (same epochs)?",
        scenes=5 * FULL.scenes,
        train=FULL.train,
        nets=("mcan-2", "rsa-2 neutral init"),
        seeds=(0,),
    ),
)


def probe_nets(base: Spec) -> dict[str, Spec]:
    """MCAN-2, and the same net with RSA in place of the decoder's SA, at either RSA init."""
    rsa = base.replace_stacks({"encoder": ["SA", "FFN"] * 2, "decoder": ["RSA", "GA", "FFN"] * 2})
    return dict(
        zip(
            PROBE_NETS,
            [
                mcan(base, 2),
                with_options(rsa, "model", {"relation_init": Ident(name="reference")}),
                with_options(rsa, "model", {"relation_init": Ident(name="neutral")}),
            ],
            strict=True,
        )
    )


def probe_folder(results: Path, probe: Probe, net: str, seed: int) -> Path:
    return results / probe.key / net.replace(" ", "-") / str(seed)


def run_probe(results: Path, probe: Probe) -> None:
    """Train and test-evaluate every (net, seed) of one probe, 2 at a time; resumable."""
    sizes = replace(FULL, scenes=probe.scenes, train=probe.train)
    if probe.family_share is None:
        data = ensure_data(results, sizes)
    else:
        data = ensure_data(results, sizes, probe.key, probe.family_share)
    runner = Runner(sizes, results, data)
    nets = probe_nets(base_spec(sizes))

    def one(unit: tuple[str, int]) -> None:
        net, seed = unit
        folder = probe_folder(results, probe, net, seed)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "net.mmnas"
        head = f"# bench/ablation.py --probe {probe.key}: {net}\n"
        path.write_text(head + format_spec(nets[net]))
        runner.cli("train", path, *runner.run_flags(folder / "train", "last.pt", seed))
        if not (folder / "eval-test.json").is_file():
            runner.cli(
                "eval", path, folder / "train" / "best.pt", "--split", "test", "--data", data,
                "--threads", "1", "-o", folder / "predictions.json",
            )  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, [(n, s) for s in probe.seeds for n in probe.nets]))


def probe_results(results: Path, probe: Probe) -> dict[str, list[dict[str, Any]]]:
    """The probe's recorded test results, by net (the seeds that finished)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for net in probe.nets:
        files = [probe_folder(results, probe, net, s) / "eval-test.json" for s in probe.seeds]
        out[net] = [json.loads(f.read_text()) for f in files if f.is_file()]
    return out


def probe_section(results: Path) -> list[str]:
    """The probes' tables for the report, those that have run (`--probe`)."""
    lines: list[str] = []
    for probe in PROBES:
        out = {k: v for k, v in probe_results(results, probe).items() if v}
        if not out:
            continue
        epochs, decay = probe.train["epochs"], probe.train.get("decay_at") or ["-"]
        lines += [
            f"### Probe `{probe.key}`: {probe.title} (`--probe`)",
            "",
            f"{probe.question} {probe.scenes} train scenes, test {FULL.test_scenes} scenes, "
            f"{epochs} epochs (×0.2 after {decay[0]}), seeds {', '.join(map(str, probe.seeds))}; "
            "width and optimiser as the tables; test accuracy, mean over the seeds.",
            "",
            probe_table(out),
            "",
        ]
    return lines


def probe_table(out: dict[str, list[dict[str, Any]]]) -> str:
    """Overall, per answer type and per family (families absent from the world: '–')."""
    keys = ("accuracy", *TYPES, *FAMILIES)
    lines = [header(("net", "seeds", "overall (each seed)", *TYPES, *FAMILIES))]
    for name, tests in out.items():
        each = ", ".join(f"{t['accuracy']:.1f}" for t in tests)
        cells = [probe_mean(tests, k) for k in keys]
        lines.append(f"| {name} | {len(tests)} | {cells[0]} ({each}) | {' | '.join(cells[1:])} |")
    return "\n".join(lines)


def probe_mean(tests: list[dict[str, Any]], key: str) -> str:
    values = [v for t in tests if (v := metric({"test": t}, key)) == v]  # NaN: family absent
    return f"{statistics.fmean(values):.1f}" if values else "–"


# --------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        choices=("a", "b", "c"),
        action="append",
        help="run only these tables (repeatable; default all)",
    )
    p.add_argument("--seeds", help="comma-separated model seeds (default 0,1,2; --tiny: 0)")
    p.add_argument("--jobs", type=int, default=2, help="units run at once (1 CPU thread each)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, one seed (the tests)")
    p.add_argument("--results", type=Path, help="results folder (default runs/ablation[-tiny])")
    p.add_argument(
        "--doc",
        type=Path,
        help="markdown file for the tables (default: docs/results.md; --tiny: RESULTS/results.md)",
    )
    p.add_argument("--report", action="store_true", help="only rewrite the tables")
    p.add_argument(
        "--probe",
        action="store_true",
        help="only the probes (PROBES: fixed nets, no search) into runs/ablation-probe; "
        "`--report` then puts their tables into the doc",
    )
    p.add_argument(
        "--inprocess",
        action="store_true",
        help="run the CLI in this process (no subprocesses; implies --jobs 1)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe:
        folder = args.results or ROOT / "runs" / "ablation-probe"
        for one in PROBES:
            run_probe(folder, one)
        print("\n".join(probe_section(folder)), flush=True)
        print("`--report` puts it into docs/results.md", flush=True)
        return 0
    sizes = TINY if args.tiny else FULL
    results = args.results or ROOT / "runs" / ("ablation-tiny" if args.tiny else "ablation")
    if args.seeds:
        sizes = replace(sizes, seeds=tuple(int(s) for s in args.seeds.split(",")))
    elif args.report:  # report every seed that finished
        sizes = replace(sizes, seeds=recorded_seeds(results, sizes) or sizes.seeds)
    results.mkdir(parents=True, exist_ok=True)
    doc = args.doc or (results / "results.md" if args.tiny else DOC)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    failures: list[str] = []
    if not args.report:
        failures = execute(args, sizes, results)
    write_doc(doc, report(sizes, results))
    print(f"tables: {doc}", flush=True)
    for f in failures:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def recorded_seeds(results: Path, sizes: Sizes) -> tuple[int, ...]:
    """The seeds with at least one finished unit of these sizes."""
    return tuple(
        sorted(
            {
                r["seed"]
                for r in read_results(results / "results.jsonl")
                if r.get("sizes") == sizes.fingerprint()
            }
        )
    )


def execute(args: argparse.Namespace, sizes: Sizes, results: Path) -> list[str]:
    """Run the asked tables' units, timing the session in RESULTS/sessions.jsonl."""
    session = {"start": time.time(), "argv": args.argv, "sizes": sizes.fingerprint()}
    data = ensure_data(results, sizes)
    cells = all_cells(sizes)
    keys = dict.fromkeys(k for t in (args.only or ["a", "b", "c"]) for k in table_cells(sizes, t))
    units = [(cells[k], s) for s in sizes.seeds for k in keys]  # seed-major: 1 seed of all first
    runner = Runner(
        sizes,
        results,
        data,
        inprocess=args.inprocess,
        log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True),
        session=session,
    )
    try:
        return run_all(runner, units, 1 if args.inprocess else args.jobs)
    finally:
        runner.mark_session()


if __name__ == "__main__":
    sys.exit(main())
