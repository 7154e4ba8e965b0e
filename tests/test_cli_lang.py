"""The language commands end to end: check, fmt, ops, convert (CliRunner and the real script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from _specs import INVALID, ROOT, SHIPPED, expected_errors
from typer.testing import CliRunner

from mmnasdsl.cli import app, main

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_check_prints_the_exact_paper_size():
    result = run("check", str(ROOT / "specs" / "vqa.mmnas"))
    assert result.exit_code == 0
    assert result.stdout.strip().endswith(
        "vqa.mmnas: ok, 30 blocks (30 searchable), search space 2^12*4^18 = 281474976710656"
    )


def test_check_all_shipped_specs_one_line_each():
    result = run("check", *map(str, SHIPPED))
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(SHIPPED)
    assert any(
        "mcan.mmnas: ok, 30 blocks (0 searchable), search space 1 (concrete)" in x for x in lines
    )
    assert any(
        "shapes-vqa.mmnas: ok, 8 blocks (8 searchable), search space 2^3*4^5 = 8192" in x
        for x in lines
    )


def test_fmt_check_passes_on_shipped_specs():
    result = run("fmt", "--check", *map(str, SHIPPED))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_check_reports_each_broken_spec(path):
    result = run("check", str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    for line, col, fragment in expected_errors(path):
        head = next(
            x for x in lines if x.startswith(f"{path}:{line}:{col}: error: ") and fragment in x
        )
        caret = lines[lines.index(head) + 2]
        assert caret.strip().startswith("^") and caret.index("^") == 4 + col - 1


def test_check_reports_every_bad_spec_and_still_summarises_good_ones():
    good = str(ROOT / "specs" / "mcan.mmnas")
    result = run("check", str(INVALID[0]), good, str(INVALID[1]))
    assert result.exit_code == 1
    assert "mcan.mmnas: ok" in result.stdout
    assert str(INVALID[0]) in result.stderr and str(INVALID[1]) in result.stderr
    assert "2 of 3 specs have errors" in result.stderr


def test_fmt_prints_rewrites_and_checks(tmp_path):
    messy = tmp_path / "messy.mmnas"
    messy.write_text("# keep me\ninput t=words encoder t=SA|FFN  # and me\nhead vqa\n")
    result = run("fmt", str(messy))
    assert result.exit_code == 0
    expected = "# keep me\ninput t = words\nencoder t = SA | FFN  # and me\nhead vqa\n"
    assert result.stdout == expected
    assert run("fmt", "--check", str(messy)).exit_code == 1
    assert run("fmt", "-w", str(messy)).exit_code == 0
    assert messy.read_text() == expected
    assert run("fmt", "--check", str(messy)).exit_code == 0


def test_fmt_of_a_syntax_error_is_a_located_error(tmp_path):
    bad = tmp_path / "bad.mmnas"
    bad.write_text("encoder t = SA *\n")
    result = run("fmt", str(bad))
    assert result.exit_code != 0
    assert "bad.mmnas:1:17" in str(result.exception)


def test_ops_lists_the_registry():
    result = run("ops")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    fusion = next(i for i, line in enumerate(lines) if line.strip().startswith("fusion op"))
    rows = {line.split()[0]: line.split()[1] for line in lines[1:fusion]}
    assert rows == {"SA": "-", "GA": "guide", "RSA": "relations", "FFN": "-"}
    fused = [line.split()[0] for line in lines[fusion + 1 :]]  # BM-NAS's
    assert fused == ["Sum", "ScaleDotAttn", "LinearGLU", "ConcatFC"]
    assert "cat[x, y]" in result.stdout


def test_convert_both_ways(tmp_path):
    arch = ROOT / "tests" / "data" / "arch-vqa-reference.json"
    out = tmp_path / "net.mmnas"
    result = run("convert", str(arch), "--space", str(ROOT / "specs" / "vqa.mmnas"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# converted from arch-vqa-reference.json (epoch0)")
    assert run("check", str(out)).exit_code == 0
    back = tmp_path / "arch.json"
    assert run("convert", str(out), "-o", str(back)).exit_code == 0
    assert json.loads(back.read_text()) == json.loads(arch.read_text())


def test_convert_json_without_space_is_a_usage_error(tmp_path):
    arch = tmp_path / "a.json"
    arch.write_text("{}")
    result = run("convert", str(arch))
    assert result.exit_code != 0 and "needs --space" in str(result.exception)


SCRIPT = [sys.executable, "-m", "mmnasdsl"]


def _script(*args: str, cwd=ROOT):
    return subprocess.run([*SCRIPT, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_real_command_typo_did_you_mean(tmp_path):
    bad = tmp_path / "vqa.mmnas"
    text = (ROOT / "specs" / "vqa.mmnas").read_text().replace("dec * 18", "RSAA dec * 17")
    bad.write_text(text)
    proc = _script("check", str(bad), str(ROOT / "specs" / "vqa.mmnas"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    line = next(i for i, x in enumerate(text.splitlines(), 1) if "RSAA" in x)
    assert f"{bad}:{line}:31: error: unknown op or pool 'RSAA' (did you mean 'RSA'?)" in proc.stderr
    assert "search space 2^12*4^18 = 281474976710656" in proc.stdout


def test_errors_never_show_tracebacks(tmp_path, capsys):
    """Through `cli.main`, the console entry point: project errors and bad flags exit
    non-zero with a message, never a traceback."""
    bad_json = tmp_path / "a.json"
    bad_json.write_text("{not json")
    vqa = str(ROOT / "specs" / "vqa.mmnas")
    cases = [
        ("check", "--bogus"),
        ("check", str(tmp_path / "missing.mmnas")),
        ("fmt", "-w", "--check", vqa),
        ("fmt", str(tmp_path / "missing.mmnas")),
        ("convert", str(bad_json), "--space", vqa),
        ("convert", vqa),
        ("convert", str(bad_json)),
    ]
    for args in cases:
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out = capsys.readouterr()
        assert info.value.code not in (0, None), args
        assert "Traceback" not in out.err + out.out, args
        assert "error" in (out.err + out.out).lower(), args


@pytest.mark.skipif(shutil.which("mmnasdsl") is None, reason="console script not installed")
def test_console_script_exists():
    proc = subprocess.run(
        ["mmnasdsl", "check", "specs/mcan.mmnas"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0 and "mcan.mmnas: ok" in proc.stdout
