"""`mmnasdsl info`: table and --json on small specs and on the paper's search space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mmnasdsl.commands import info
from mmnasdsl.lang.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
model m { d_model = 32 heads = 4 }
input text = words(max_len = 8, embed = learned(16), lstm)
input image = objects(max = 10, dim = 12, relations = box4)
encoder text = (SA | FFN) * 2
decoder image(guide = text) = (SA | RSA | GA | FFN) GA FFN
head vqa(answers = 6)
"""


def app() -> typer.Typer:
    """A tiny app with only `info` (a callback keeps it a command group)."""
    a = typer.Typer()
    a.callback()(lambda: None)
    info.register(a)
    return a


def run(*args: str) -> dict:
    result = CliRunner().invoke(app(), ["info", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json(tmp_path: Path) -> None:
    path = tmp_path / "s.mmnas"
    path.write_text(SPEC)
    data = run(str(path), "--json", "--vocab", "30")
    assert data["search_space_size"] == 16
    p = data["params"]
    assert set(p) >= {"total", "embedding", "encoder", "decoder", "head", "supernet_total"}
    assert p["total"] == p["embedding"] + p["encoder"] + p["decoder"] + p["head"]
    assert p["supernet_total"] > p["total"]
    assert data["flops_per_sample"] > 0
    assert [(b["stack"], b["index"]) for b in data["blocks"]][:3] == [
        ("encoder", 0),
        ("encoder", 1),
        ("decoder", 0),
    ]
    assert set(data["blocks"][2]["params"]) == {"SA", "RSA", "GA", "FFN"}
    bigger = run(str(path), "--json", "--vocab", "40", "--answers", "9")["params"]
    assert bigger["embedding"] - p["embedding"] == 10 * 16
    assert bigger["head"] - p["head"] == 3 * (2 * 32 + 1)


def test_table(tmp_path: Path) -> None:
    path = tmp_path / "s.mmnas"
    path.write_text(SPEC)
    result = CliRunner().invoke(app(), ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "search space: 16" in result.output and "supernet" in result.output


def test_bad_spec_raises_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.mmnas"
    path.write_text(SPEC.replace("GA FFN", "GAA FFN"))
    result = CliRunner().invoke(app(), ["info", str(path)])
    assert isinstance(result.exception, SpecError)  # cli.main prints it and exits 1


@pytest.mark.parametrize("name", ["vqa", "mcan"])
def test_shipped_specs(name: str) -> None:
    path = ROOT / "specs" / f"{name}.mmnas"
    if not path.exists():
        pytest.skip(f"specs/{name}.mmnas not shipped yet")
    data = run(str(path), "--json")
    if name == "vqa":
        assert data["search_space_size"] == 2**12 * 4**18
    else:
        assert data["search_space_size"] == 1
        assert data["params"]["total"] == data["params"]["supernet_total"]
    assert 20e6 < data["params"]["total"] < 90e6
