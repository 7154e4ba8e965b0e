"""The run commands: `search`, `train`, `eval` (and their torchrun scale-out).

These are the edges of the pipeline: they read the spec, pick the run directory, set up
logging (RUNDIR/log.txt, and a rich progress bar on a terminal or plain lines otherwise),
join the process group under torchrun, and hand a job to `mmnasdsl.search` or
`mmnasdsl.train.loop`. Rank 0 alone writes files and prints.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.settings import MAX_SEED
from mmnasdsl.lang.spec import Spec
from mmnasdsl.train.progress import LogReporter, NullReporter, Reporter, format_stats

if TYPE_CHECKING:  # torch loads when a command runs, not when the CLI starts
    import torch

    from mmnasdsl.train.distributed import Dist

log = logging.getLogger("mmnasdsl")

SpecArg = Annotated[Path, typer.Argument(help="spec file (.mmnas)", show_default=False)]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "-o", "--out", help="run directory (default: runs/<spec name>[-N], never an earlier run)"
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data", help="data folder with train/val/test .h5 (default: the spec's data section)"
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option("--seed", min=0, max=MAX_SEED, help="seed of the split, the order, the paths"),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue the run in -o exactly")]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision", help="fp32, bf16 (CPU or CUDA) or fp16 (CUDA); overrides the spec's"
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress, warnings only")]
BatchOpt = Annotated[int | None, typer.Option(help="batch size")]
CkptOpt = Annotated[
    int, typer.Option("--checkpoint-every", min=1, help="steps between mid-epoch checkpoints")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        max=1024,
        help="CPU threads per process (default: $OMP_NUM_THREADS, else half the cores)",
    ),
]


# ------------------------------------------------------------------------ progress & logs


class RichReporter:
    """A rich progress bar per phase (loss, samples/s, ETA); summaries go to the log."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.samples, self.t0 = 0, 0.0

    def start(self, phase: str, total: int, done: int = 0) -> None:
        import time

        if self.task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(phase, total=total, completed=done, stats="", rate="")
        self.samples, self.t0 = 0, time.perf_counter()

    def advance(self, samples: int, **stats: float) -> None:
        import time

        self.samples += samples
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(
            self.task, advance=1, stats=format_stats(stats), rate=f"{rate:.0f} samples/s"
        )

    def finish(self, summary: str) -> None:
        log.info("%s", summary)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


@contextmanager
def reporting(run_dir: Path | None, quiet: bool, dist: Dist) -> Any:
    """Logging to RUNDIR/log.txt and the console, and the reporter the loops talk to."""
    log.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    if dist.is_main and run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / "log.txt", encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    tty = sys.stderr.isatty() and dist.is_main and not quiet
    reporter: Reporter = NullReporter() if quiet or not dist.is_main else LogReporter()
    if tty:
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(stderr=True)
        handlers.append(RichHandler(console=console, show_path=False, show_level=False))
        reporter = RichReporter(console)
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setFormatter(logging.Formatter("%(message)s"))
        handlers[-1].setLevel(logging.WARNING if quiet or not dist.is_main else logging.INFO)
    for h in handlers:
        log.addHandler(h)
    try:
        yield reporter
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()
        for h in handlers:
            log.removeHandler(h)
            h.close()


# ------------------------------------------------------------------------ shared set-up


def load_spec(path: Path) -> Spec:
    import mmnasdsl

    return mmnasdsl.load(path)


def default_threads() -> int:
    """$OMP_NUM_THREADS (torchrun sets 1), else half the cores: the shapes-sized models gain
    little from more threads, and on a machine busy with other work, torch's spinning
    worker threads made a step 5x slower with 2 threads than with 1 (2-core VM)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else max(1, (os.cpu_count() or 2) // 2)


def start_processes(device: str, threads: int | None = None) -> tuple[torch.device, Dist]:
    """The device and, under torchrun (RANK / WORLD_SIZE set), the process group."""
    import torch

    from mmnasdsl.train import distributed

    torch.set_num_threads(threads or default_threads())
    if device not in ("cpu", "cuda", "auto"):
        raise UsageError(f"--device {device}: expected cpu, cuda or auto")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (try --device auto)")
    dev = distributed.device_for(device)
    return dev, distributed.init(dev)


def run_dir_for(
    out: Path | None, spec_path: Path, resume: bool, marker: str, dist: Dist
) -> tuple[Path, bool]:
    """Rank 0 picks (and checks) the run directory; every rank gets the same path. Also
    whether this run created it (a failed set-up removes what it created)."""
    from mmnasdsl.train import distributed, runs

    path, created = None, False
    if dist.is_main:
        target = Path(out) if out is not None else runs.default_run_dir(spec_path)
        created = not target.exists()
        path = runs.prepare_run_dir(out, spec_path, resume=resume, marker=marker)
    return Path(distributed.broadcast_object(str(path) if path else None, dist)), created


def data_for(spec: Spec, data: str | None, dist: Dist) -> Path:
    """The data folder; rank 0 generates missing `shapes` data while the others wait."""
    from mmnasdsl.data import resolve
    from mmnasdsl.heads import get_head
    from mmnasdsl.train import distributed
    from mmnasdsl.train.loop import require_head

    kind = get_head(require_head(spec)).data_kind
    folder = resolve(spec, kind, data) if dist.is_main else None
    distributed.barrier(dist)
    return folder if folder is not None else resolve(spec, kind, data)


@contextmanager
def run_session(
    spec: Spec,
    spec_path: Path,
    out: Path | None,
    data: str | None,
    resume: bool,
    device: str,
    threads: int | None,
    quiet: bool,
    marker: str,
) -> Iterator[dict[str, Any]]:
    """The set-up `search` and `train` share: device and process group, run directory,
    logging, data. Yields the fields every job takes; leaves the process group on exit.

    A run that fails before it wrote anything but its log (bad data, a model too large,
    an interrupt in the first steps) leaves nothing behind: the log goes, and the
    directory too when this run created it, so the same command can be retried.

    Args:
        marker: the checkpoint a resumable run leaves (checkpoint.pt, last.pt).
    """
    from mmnasdsl.train import distributed, runs

    dev, dist = start_processes(device, threads)
    try:
        run_dir, created = run_dir_for(out, spec_path, resume, marker, dist)
        try:
            with reporting(run_dir, quiet, dist) as reporter:
                yield {
                    "spec": spec,
                    "data": data_for(spec, data, dist),
                    "run_dir": run_dir,
                    "device": dev,
                    "resume": resume,
                    "reporter": reporter,
                    "dist": dist,
                }
        except BaseException:
            if dist.is_main and not resume:
                runs.discard_unused(run_dir, created)
            raise
    finally:
        distributed.shutdown(dist)


def overrides(**flags: Any) -> dict[str, Any]:
    """The flags a user gave (None = not given), as settings overrides."""
    return {k: v for k, v in flags.items() if v is not None}


def flag_settings(build: Any, spec: Spec, **flags: Any) -> Any:
    """`build(spec, **overrides)` (search_settings, train_settings) with the flags a user
    gave; a value the option's schema refuses is a UsageError naming the flag, with the
    schema's range (the one table of what an option may be)."""
    from pydantic import ValidationError

    from mmnasdsl.lang.check import validation_message

    try:
        return build(spec, **overrides(**flags))
    except ValidationError as exc:
        names = {field: "--" + field.replace("_", "-") for field in flags}
        raise UsageError(validation_message(exc, names)) from None


# ----------------------------------------------------------------------------- commands


def search_cmd(
    spec_path: SpecArg,
    out: OutOpt = None,
    data: DataOpt = None,
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    device: DeviceOpt = "auto",
    epochs: Annotated[int | None, typer.Option(help="T_j: search epochs")] = None,
    warmup: Annotated[int | None, typer.Option(help="T_w: warm-up epochs")] = None,
    batch: BatchOpt = None,
    lr: Annotated[float | None, typer.Option(help="base lr of W")] = None,
    theta_lr: Annotated[float | None, typer.Option("--theta-lr", help="lr of θ")] = None,
    update_ratio: Annotated[
        int | None, typer.Option("--update-ratio", help="u: W steps per θ step")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="early-stop patience (epochs)")] = None,
    d_model: Annotated[int | None, typer.Option("--d-model", help="width during search")] = None,
    searcher: Annotated[
        str | None,
        typer.Option(
            help="oneshot (MMnas), darts (first-order DARTS) or random (default: the spec's "
            "search { searcher }, else oneshot)"
        ),
    ] = None,
    checkpoint_every: CkptOpt = 50,
    precision: PrecisionOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Search a spec's space (MMnas Algorithm 1); writes RUNDIR/arch.mmnas after every epoch."""
    from mmnasdsl.lang.settings import search_settings
    from mmnasdsl.search import SEARCHERS, SearchJob, run_search

    spec = load_spec(spec_path)
    given = "--searcher" if searcher else f"{spec_path}: search {{ searcher }}"
    searcher = searcher or search_settings(spec).searcher or "oneshot"
    if searcher not in SEARCHERS:
        try:
            SEARCHERS.get(searcher)
        except KeyError as exc:
            raise UsageError(
                f"{given}: {exc.args[0]}; one of {', '.join(SEARCHERS.names())}"
            ) from None
    settings = flag_settings(
        search_settings,
        spec,
        epochs=epochs,
        warmup=warmup,
        batch=batch,
        lr=lr,
        theta_lr=theta_lr,
        update_ratio=update_ratio,
        patience=patience,
        d_model=d_model,
        precision=precision,
    )
    session = run_session(
        spec, spec_path, out, data, resume, device, threads, quiet, "checkpoint.pt"
    )
    with session as common:
        job = SearchJob(
            **common,
            settings=settings,
            seed=seed,
            searcher=searcher,
            checkpoint_every=checkpoint_every,
        )
        history = run_search(job)
        if job.dist.is_main and history["epochs"]:
            last = history["epochs"][-1]
            log.info(
                "search done: %s (D_a %s %.2f); next: mmnasdsl train %s",
                job.run_dir / "arch.mmnas",
                last["metric_name"],
                last["metric"],
                job.run_dir / "arch.mmnas",
            )


def train_cmd(
    spec_path: SpecArg,
    out: OutOpt = None,
    data: DataOpt = None,
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    device: DeviceOpt = "auto",
    epochs: Annotated[int | None, typer.Option(help="training epochs")] = None,
    batch: BatchOpt = None,
    lr: Annotated[float | None, typer.Option(help="base learning rate")] = None,
    checkpoint_every: CkptOpt = 200,
    precision: PrecisionOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a concrete spec from scratch; evaluates on val after every epoch."""
    from mmnasdsl.lang.settings import train_settings
    from mmnasdsl.train.trainer import Trainer, TrainJob

    spec = load_spec(spec_path)
    if not spec.is_concrete:
        raise UsageError(
            f"{spec_path} is a search space ({spec.search_space_size():,} "
            f"architectures), not one network: run `mmnasdsl search {spec_path}` "
            "and train the arch.mmnas it writes"
        )
    settings = flag_settings(
        train_settings, spec, epochs=epochs, batch=batch, lr=lr, precision=precision
    )
    session = run_session(spec, spec_path, out, data, resume, device, threads, quiet, "last.pt")
    with session as common:
        job = TrainJob(**common, settings=settings, seed=seed, checkpoint_every=checkpoint_every)
        summary = Trainer(job).fit()
        if job.dist.is_main and summary["best"]:
            log.info(
                "training done: best val %s %.2f at epoch %d; %s",
                summary["metric"],
                summary["best"][summary["metric"]],
                summary["best_epoch"],
                job.run_dir / "best.pt",
            )


def eval_cmd(
    spec_path: SpecArg,
    checkpoint: Annotated[
        Path, typer.Argument(help="best.pt or last.pt of `mmnasdsl train`", show_default=False)
    ],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    data: DataOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="predictions file (default: predictions-<split>.json next to CKPT)"
        ),
    ] = None,
    max_images: Annotated[
        int | None,
        typer.Option("--max-images", min=1, help="ITM: score only the first N images' pairs"),
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Evaluate a trained checkpoint: VQA accuracy, ITM Recall@K, VG accuracy@0.5."""
    from mmnasdsl.train import runs
    from mmnasdsl.train.distributed import Dist
    from mmnasdsl.train.trainer import evaluate_checkpoint

    spec = load_spec(spec_path)
    if not checkpoint.is_file():
        raise UsageError(f"{checkpoint}: no such checkpoint")
    dev, _ = start_processes(device, threads)
    metrics, predictions = evaluate_checkpoint(
        spec, checkpoint, data_for(spec, data, Dist()), split, dev, max_images
    )
    out = out or checkpoint.parent / f"predictions-{split}.json"
    runs.write_json(out, predictions)
    runs.write_json(out.with_name(f"eval-{split}.json"), metrics)
    print_metrics(metrics, f"{spec_path} on {split}")
    typer.echo(f"predictions: {out}")


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """A small table of the metrics (nested groups flattened as group/key)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                table.add_row(f"{key}/{sub}", f"{v:.2f}")
        else:
            table.add_row(key, f"{value:.2f}" if isinstance(value, float) else json.dumps(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
