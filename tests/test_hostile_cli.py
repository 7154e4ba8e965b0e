"""Hostile command lines through `cli.main`: bad flags, output paths, checkpoints and data
end in one message and exit code 1 (never a traceback); a bug ends in its traceback and
exit code 70; a failed set-up leaves no run directory behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _runkit import make_data, tiny_spec_text
from _specs import ROOT

from mmnasdsl.cli import EXIT_BUG, EXIT_CODES, EXIT_ERROR, EXIT_INTERRUPTED, main

SHAPES = str(ROOT / "specs" / "shapes-vqa.mmnas")  # a search space
MCAN = str(ROOT / "specs" / "mcan.mmnas")  # a concrete spec


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `mmnasdsl ARGS` through the console entry point."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return int(info.value.code or 0), out.err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The message of a command that must fail as a user error (exit 1, no traceback)."""
    code, err = run(capsys, *args)
    assert code == EXIT_ERROR, (args, err)
    assert "Traceback" not in err and "error: " in err.splitlines()[0], (args, err)
    return err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny search-space spec, a folder of its tiny shapes data)."""
    folder = tmp_path_factory.mktemp("tiny")
    spec = folder / "tiny.mmnas"
    spec.write_text(tiny_spec_text("vqa"), encoding="utf-8")
    return spec, make_data(folder / "data", "vqa")


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny concrete spec (eval builds its network in milliseconds)."""
    spec = tmp_path_factory.mktemp("net") / "net.mmnas"
    spec.write_text(tiny_spec_text("vqa", searchable=False), encoding="utf-8")
    return str(spec)


# ------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("search", "--epochs", "-1", SHAPES), "--epochs"),
        (("search", "--warmup", "-5", SHAPES), "--warmup"),
        (("search", "--batch", "0", SHAPES), "--batch"),
        (("search", "--lr", "-1", SHAPES), "--lr"),
        (("search", "--lr", "nan", SHAPES), "--lr"),
        (("search", "--lr", "inf", SHAPES), "--lr"),
        (("search", "--theta-lr", "1e309", SHAPES), "--theta-lr"),
        (("search", "--d-model", "7", SHAPES), "--d-model"),
        (("search", "--update-ratio", "0", SHAPES), "--update-ratio"),
        (("search", "--patience", "0", SHAPES), "--patience"),
        (("search", "--batch", "100000000000000000000000", SHAPES), "--batch"),
        (("train", "--epochs", "0", MCAN), "--epochs"),
        (("train", "--batch", "-1", MCAN), "--batch"),
        (("train", "--lr", "0", MCAN), "--lr"),
        (("search", "--seed", "-1", SHAPES), "--seed"),
        (("search", "--threads", "100000000000", SHAPES), "--threads"),
        (("info", "--vocab", "1" + "0" * 30, MCAN), "--vocab"),
        (("info", "--answers", "0", SHAPES), "--answers"),
        (("info", "--d-model", "100000", MCAN), "--d-model"),
        (("convert", MCAN, "--epoch", "-1"), "--epoch"),
        (("data", "shapes", "--task", "vqa", "-o", "x", "--scenes", "1" + "0" * 20), "--scenes"),
        (("search", "--epoch", "3", SHAPES), "--epoch"),
        (("search", "--epochs", "abc", SHAPES), "--epochs"),
        (("search", "--resume", SHAPES), "--resume needs -o"),
    ],
)
def test_bad_flags_name_the_flag(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], flag: str
) -> None:
    assert flag in refused(capsys, *args)


def test_usage_errors_exit_1_with_the_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "check", "--bogus")
    assert "No such option: --bogus" in err and "`mmnasdsl check --help`" in err
    assert "Missing argument" in refused(capsys, "eval", MCAN)
    with pytest.raises(SystemExit) as info:  # no command: the help, as a usage error
        main([])
    assert info.value.code == EXIT_ERROR and "Commands" in capsys.readouterr().out


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    for part in ("0 ok", "1 a bad spec", "70 an internal error (a bug)", "130 interrupted"):
        assert part in text


def test_the_readme_documents_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"\n| {code} | " in readme, code


# ---------------------------------------------------------------------- output paths


def test_output_that_is_a_file_or_unwritable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "a file, not a run directory" in refused(capsys, "search", SHAPES, "-o", str(afile))
    under_file = afile / "run"
    assert "cannot write the run directory" in refused(capsys, "train", MCAN, "-o", str(under_file))
    assert "cannot write" in refused(capsys, "search", SHAPES, "-o", "/proc/mmnasdsl-run")
    assert afile.read_text() == "x"


def test_convert_to_an_unwritable_place_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    err = refused(capsys, "convert", MCAN, "-o", str(target / "arch.json"))
    assert str(target / "arch.json") in err


# ------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a checkpoint", b"PK\x03\x04 truncated zip", b"", "tensor", "list"],
)
def test_eval_of_a_non_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_net: str, content: bytes | str
) -> None:
    ckpt = tmp_path / "best.pt"
    if content == "tensor":
        torch.save(torch.zeros(3), ckpt)
    elif content == "list":
        torch.save([1, 2], ckpt)
    else:
        ckpt.write_bytes(content)  # type: ignore[arg-type]
    err = refused(capsys, "eval", tiny_net, str(ckpt), "--data", str(tmp_path))
    assert str(ckpt) in err and "checkpoint" in err


def test_eval_of_a_checkpoint_with_damaged_contents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_net: str
) -> None:
    ckpt = tmp_path / "best.pt"
    args = ("eval", tiny_net, str(ckpt), "--data", str(tmp_path))
    torch.save({"kind": "model", "model": {}, "sizes": {"vocab_size": "x"}}, ckpt)
    assert "damaged sizes" in refused(capsys, *args)
    torch.save({"kind": "model", "model": {"w": 1}, "sizes": {"vocab_size": 5}}, ckpt)
    assert "does not fit" in refused(capsys, *args)
    torch.save({"kind": "model", "model": [1], "sizes": {"vocab_size": 5}}, ckpt)
    assert "does not fit" in refused(capsys, *args)


def test_search_resume_from_garbage(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, data = tiny
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"\x80\x04garbage")
    args = ("search", str(spec), "-o", str(run_dir), "--data", str(data), "--resume", "-q")
    err = refused(capsys, *args)
    assert "checkpoint.pt: not a mmnasdsl checkpoint" in err
    torch.save({"kind": "search", "spec": "x"}, run_dir / "checkpoint.pt")
    assert "a different spec" in refused(capsys, *args)
    assert (run_dir / "checkpoint.pt").is_file()  # a resume never removes the run


# -------------------------------------------------------------------------------- data


def damaged_copy(data: Path, folder: Path) -> Path:
    """A copy of a data folder whose train store has its first metadata bytes overwritten."""
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}.h5").write_bytes((data / f"{split}.h5").read_bytes())
    raw = bytearray((folder / "train.h5").read_bytes())
    raw[800:1600] = b"\xff" * 800
    (folder / "train.h5").write_bytes(bytes(raw))
    return folder


def test_a_corrupt_store_fails_the_run_and_leaves_no_run_dir(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, data = tiny
    bad = damaged_copy(data, tmp_path / "bad")
    run_dir = tmp_path / "run"
    args = ("search", str(spec), "-o", str(run_dir), "-q")
    err = refused(capsys, *args, "--data", str(bad))
    assert "train.h5" in err
    assert not run_dir.exists()  # created by the failed run: removed with its log
    existing = tmp_path / "existing"
    existing.mkdir()
    refused(capsys, "search", str(spec), "-o", str(existing), "-q", "--data", str(bad))
    assert existing.is_dir() and not any(existing.iterdir())  # only the log went


def test_a_run_dir_holding_only_a_log_may_be_reused(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a run killed during set-up leaves (its log) does not block the retry."""
    spec, data = tiny
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.txt").write_text("killed while loading data\n")
    args = ("search", str(spec), "-o", str(run_dir), "--data", str(data), "-q")
    code, err = run(capsys, *args, "--epochs", "0", "--warmup", "1")
    assert code == 0, err
    assert (run_dir / "arch.mmnas").is_file()
    assert "not empty" in refused(capsys, *args)  # now it holds a run


# --------------------------------------------------------------------- specs via info


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("dim = 64", "dim = " + "1" + "0" * 40), "integer with 41 digits"),
        (("d_model = 128", "d_model = 128  relation_dim = " + "1" + "0" * 40), "integer with"),
        (("head vqa(loss = bce)", "head vqa(answers = " + "1" + "0" * 40 + ")"), "integer with"),
        (("d_model = 128", "d_model = 128  relation_dim = 10000000000"), "relation_dim"),
    ],
)
def test_info_refuses_absurd_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], fragment: str
) -> None:
    spec = tmp_path / "big.mmnas"
    text = Path(SHAPES).read_text().replace(*edit)
    assert text != Path(SHAPES).read_text()
    spec.write_text(text)
    err = refused(capsys, "info", str(spec))
    assert fragment in err and str(spec) in err


def test_info_at_the_largest_sizes_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "big.mmnas"
    text = (
        Path(SHAPES)
        .read_text()
        .replace("d_model = 128", "d_model = 8192  relation_dim = 4096  fused = 65536")
        .replace("dim = 64", "dim = 65536")
        .replace("max = 12", "max = 4096")
        .replace("max_len = 16", "max_len = 1024")
    )
    spec.write_text(text)
    code, err = run(capsys, "info", "--json", str(spec), "--vocab", "10000000")
    assert code == 0, err


# ------------------------------------------------------------------------ bugs, Ctrl-C


def test_a_bug_prints_its_traceback_and_exits_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mmnasdsl.commands.lang as lang

    def broken(*_: object) -> str:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(lang, "summary", broken)
    code, err = run(capsys, "check", MCAN)
    assert code == EXIT_BUG
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "a bug in mmnasdsl" in err and "report it" in err


def test_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mmnasdsl.commands.lang as lang

    def interrupted(*_: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(lang, "summary", interrupted)
    code, err = run(capsys, "check", MCAN)
    assert code == EXIT_INTERRUPTED and "interrupted" in err and "Traceback" not in err


def test_broken_pipe_is_quiet() -> None:
    """`mmnasdsl fmt *.mmnas | head -c 10`: the reader leaves after 10 bytes of ~300 KB
    (more than a pipe buffers); the writer stops with exit 1 and says nothing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmnasdsl", "fmt", *[SHAPES] * 300],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_ERROR and err == ""


# ------------------------------------------------------------------- data commands


def test_data_info_on_damaged_stores(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = tiny
    bad = damaged_copy(data, tmp_path / "bad")
    assert "train.h5" in refused(capsys, "data", "info", str(bad / "train.h5"))
    for key, value in (
        ("format_version", "1"),
        ("format_version", np.array([1, 2])),
    ):
        store = tmp_path / f"{key}-{type(value).__name__}.h5"
        store.write_bytes((data / "val.h5").read_bytes())
        with h5py.File(store, "r+") as f:
            f.attrs[key] = value
        assert "format_version" in refused(capsys, "data", "info", str(store))


def test_which_stray_exceptions_are_the_inputs_and_which_are_bugs() -> None:
    from pydantic import ValidationError

    from mmnasdsl.cli import expected_failure
    from mmnasdsl.lang.settings import TrainSettings

    with pytest.raises(ValidationError) as info:
        TrainSettings(epochs=-3)
    assert expected_failure(info.value) == (
        "invalid settings: 'epochs': -3 is out of range (must be >= 1)"
    )
    assert expected_failure(PermissionError(13, "Permission denied", "/x")) == (
        "/x: Permission denied"
    )
    assert "out of memory" in str(expected_failure(MemoryError()))
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")
    assert "out of memory" in str(expected_failure(oom))
    for bug in (KeyError("k"), RecursionError(), AttributeError("a"), RuntimeError("r")):
        assert expected_failure(bug) is None
