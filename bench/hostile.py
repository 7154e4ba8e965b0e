"""Time hostile inputs end to end: each case is one `mmnasdsl` command in a fresh process.

    python bench/hostile.py                       # every case, with this checkout's code
    python bench/hostile.py --only sa-1mb         # some cases (names below)
    python bench/hostile.py --code /other/checkout --timeout 60   # e.g. an older commit

For every case it prints the wall time, the CPU time (user + system) and the peak resident
memory of the process (from `os.wait4`'s rusage), the bytes written to stderr, the exit
code and the first line of the message, then the machine and the command line. On a
shared machine the CPU time is the steadier figure: wall time grows with the load. The
first case, a shipped spec, is the fixed cost of starting Python and the CLI; the others
add to it. A case runs under a memory cap (`--memory`, RLIMIT_AS) and a time limit
(`--timeout`), so an input that once took 20 GB cannot take the machine down; "timeout"
and "killed" are results too.

The inputs are the large and deep specs of issue 15 (a 30 KB line of unknown ops, 100 KB
of them, 300 KB of repeated pool lines, 1 MB of `SA ` in one stack), the deep nestings and
long numbers that once raised RecursionError and VisitError, and the largest specs the
front end still reads in full (just under its token limit).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
HEAD = "input text = words\ninput image = objects\nhead vqa\n"


def _unknown_ops(size: int) -> str:
    return HEAD + "encoder text = " + "XX " * (size // 3) + "\n"


def _pool_lines(size: int) -> str:
    line = "pool enc = SA | FFN\n"
    return HEAD + line * (size // len(line)) + "encoder text = enc\n"


def _sa_stack(size: int) -> str:
    return HEAD + "encoder text = " + "SA " * (size // 3) + "\n"


def _pool_chain(n: int) -> str:
    chain = ["pool p0 = SA | FFN"] + [f"pool p{k} = p{k - 1}" for k in range(1, n)]
    return HEAD + "\n".join(chain) + f"\nencoder text = p{n - 1} * 4\n"


def _parens(k: int) -> str:
    return HEAD + "encoder text = " + "(" * k + "SA" + ")" * k + "\n"


def _valid_4096() -> str:
    """The largest stack the checker admits, written out one op per block (a valid spec)."""
    return HEAD + "encoder text = " + "SA FFN " * 2048 + "\n"


# name -> (command, spec text). Each spec is written to a temporary file first.
CASES: dict[str, tuple[str, Callable[[], str]]] = {
    "shipped-spec": ("check", lambda: (HERE / "specs" / "shapes-vqa.mmnas").read_text()),
    "unknown-ops-30k": ("check", lambda: _unknown_ops(30_000)),
    "unknown-ops-60k": ("check", lambda: _unknown_ops(59_000)),  # ~19,700 tokens: still read
    "unknown-ops-100k": ("check", lambda: _unknown_ops(100_000)),
    "pool-lines-300k": ("check", lambda: _pool_lines(300_000)),
    "pool-lines-60k": ("check", lambda: _pool_lines(60_000)),  # ~18,000 tokens: still read
    "sa-1mb": ("check", lambda: _sa_stack(1_000_000)),
    "valid-4096-blocks": ("check", _valid_4096),
    "valid-4096-blocks-fmt": ("fmt", _valid_4096),
    "valid-4096-blocks-info": ("info", _valid_4096),
    "pool-chain-992": ("check", lambda: _pool_chain(992)),
    "pool-chain-4900": ("check", lambda: _pool_chain(4900)),
    "parens-100k": ("check", lambda: _parens(100_000)),
    "digits-5000": ("check", lambda: HEAD + "encoder text = SA * " + "9" * 5000 + "\n"),
    "comment-1mb": ("check", lambda: "#" + "x" * 1_000_000 + "\n" + HEAD + "encoder text = SA\n"),
}


def run_case(
    code: Path, command: str, text: str, timeout: float, memory_mb: int
) -> dict[str, object]:
    """Run `python -m mmnasdsl COMMAND FILE` with `code` first on the path."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "case.mmnas"
        spec.write_text(text, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(code), "MMNASDSL_DATA": tmp}

        def limits() -> None:
            cap = memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmnasdsl", command, str(spec)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp,
            preexec_fn=limits,
        )
        err, first, status = 0, b"", "ok"
        assert proc.stderr is not None
        while True:  # count stderr bytes as they come (a case once wrote 474 MB)
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                proc.send_signal(signal.SIGKILL)
                status = "timeout"
                break
            ready, _, _ = select.select([proc.stderr], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(proc.stderr.fileno(), 1 << 16)
                if not chunk:
                    break
                if err < 4096:
                    first += chunk[: 4096 - err]
                err += len(chunk)
        _, raw, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.stderr.close()
        code_ = os.waitstatus_to_exitcode(raw)
        if status == "ok" and code_ < 0:
            status = f"killed ({signal.Signals(-code_).name})"
        message = first.decode("utf-8", "replace").strip().splitlines()
        return {
            "seconds": seconds,
            "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024,
            "stderr_bytes": err,
            "exit": code_,
            "status": status,
            "message": message[0][:90] if message else "",
            "traceback": "Traceback" in first.decode("utf-8", "replace"),
        }


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} cores {model}, Python {platform.python_version()}"
        f", {platform.system()} {platform.release()}; load average {load}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=HERE, help="checkout to run (PYTHONPATH)")
    ap.add_argument("--only", nargs="*", default=None, help=f"cases: {', '.join(CASES)}")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    ap.add_argument("--memory", type=int, default=4096, help="address-space cap per case, MB")
    args = ap.parse_args(argv)
    names = args.only or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    print("| case | command | input | wall s | CPU s | peak MB | stderr bytes | exit | message |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        command, make = CASES[name]
        text = make()
        r = run_case(args.code, command, text, args.timeout, args.memory)
        outcome = r["status"] if r["status"] != "ok" else r["exit"]
        tb = " (traceback)" if r["traceback"] else ""
        print(
            f"| {name} | {command} | {len(text.encode()):,} B | {r['seconds']:.2f} | "
            f"{r['cpu']:.2f} | {r['peak_mb']:.0f} | {r['stderr_bytes']:,} | {outcome}{tb} | "
            f"{str(r['message']).replace('|', '/')} |",
            flush=True,
        )
    print(f"\nmachine: {machine()}")
    print(f"code: {args.code}")
    given = argv if argv is not None else sys.argv[1:]
    print(f"command: python {' '.join([sys.argv[0], *given])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
