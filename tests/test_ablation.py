"""bench/ablation.py (issue 8) at tiny sizes: every table's cells run end to end, the
results are recorded once, a rerun skips them, and the tables land in the markdown file."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from _specs import load_bench

import mmnasdsl
from mmnasdsl.lang.settings import model_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("ablation")


def test_cells_are_generated_from_the_base_spec(bench: ModuleType) -> None:
    cells = bench.all_cells(bench.FULL)
    for key, ops in bench.POOLS.items():
        blocks = cells[f"a/{key}"].spec.blocks()
        assert {b.choices for b in blocks if b.stack == "decoder"} == {ops}
        assert len(blocks) == sum(bench.FULL.depth)
    assert cells["c/mcan-2"].spec.is_concrete
    assert [b.choices[0] for b in cells["c/mcan-1"].spec.blocks()] == [
        "SA",
        "FFN",
        "SA",
        "GA",
        "FFN",
    ]
    randoms = [cells[f"b/random-{i + 1}"].spec for i in range(bench.FULL.n_random)]
    assert all(s.is_concrete for s in randoms)
    assert len({json.dumps(bench.arch_of(s)) for s in randoms}) > 1
    for cell in cells.values():  # every variant is a valid spec of the language
        mmnasdsl.loads(bench.spec_text(cell), cell.key)


def test_probe_nets_differ_only_where_meant(bench: ModuleType) -> None:
    """--probe: MCAN-2 vs (RSA GA FFN) * 2 at either RSA init, all valid specs."""
    nets = bench.probe_nets(bench.base_spec(bench.FULL))
    assert list(nets) == list(bench.PROBE_NETS)
    specs = {name: mmnasdsl.loads(bench.format_spec(spec), name) for name, spec in nets.items()}
    inits = {n: model_settings(s).relation_init for n, s in specs.items()}
    assert inits == {
        "mcan-2": "neutral",
        "rsa-2 reference init": "reference",
        "rsa-2 neutral init": "neutral",
    }
    rsa = [b.choices[0] for b in specs["rsa-2 neutral init"].blocks() if b.stack == "decoder"]
    assert rsa == ["RSA", "GA", "FFN"] * 2


def test_probe_section_reports_what_finished(bench: ModuleType, tmp_path: Path) -> None:
    """Probe tables show the seeds that finished; families a probe's world lacks read '–'."""
    probe = bench.PROBES[0]
    assert probe.family_share == bench.NEAREST_ONLY
    for net, acc in zip(probe.nets, (40.0, 44.0, 56.0), strict=True):
        folder = bench.probe_folder(tmp_path, probe, net, probe.seeds[0])
        folder.mkdir(parents=True)
        test = {"accuracy": acc, "per_type": {"other": acc}, "per_family": {"nearest": acc}}
        (folder / "eval-test.json").write_text(json.dumps(test))
    lines = "\n".join(bench.probe_section(tmp_path)).splitlines()
    assert lines[0].startswith(f"### Probe `{probe.key}`")
    rows = [line for line in lines if line.startswith("| rsa-2 neutral init")]
    assert rows == [
        "| rsa-2 neutral init | 1 | 56.0 (56.0) | – | – | 56.0 | – | – | – | – | 56.0 | – |"
    ]
    assert not any("budget" in line for line in lines)  # that probe has not run


def test_tiny_run_records_resumes_and_reports(bench: ModuleType, tmp_path: Path) -> None:
    results, doc = tmp_path / "abl", tmp_path / "results.md"
    doc.write_text("# Results\n\nThe reading stays.\n", encoding="utf-8")
    argv = ["--tiny", "--inprocess", "--results", str(results), "--doc", str(doc)]
    assert bench.main(argv) == 0
    records = bench.read_results(results / "results.jsonl")
    keys = {k for t in "abc" for k in bench.table_cells(bench.TINY, t)}
    assert {r["cell"] for r in records} == keys
    for r in records:
        assert set(r["test"]["per_type"]) <= set(bench.TYPES)
        assert r["params"] > 0 and r["arch"]["decoder"]
    assert bench.main(argv) == 0  # a rerun finds everything done
    assert len(bench.read_results(results / "results.jsonl")) == len(records)
    text = doc.read_text(encoding="utf-8")
    assert "The reading stays." in text and text.count(bench.BEGIN) == 1
    assert "{GA,FFN}" in text and "MCAN-1" in text and "random (all)" in text
    assert len(json.loads((results / "sessions.jsonl").read_text().splitlines()[0])) >= 2
    assert "over 2 session(s)" in text  # one line per finished unit, counted once per session
