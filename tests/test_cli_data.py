"""`mmnasdsl data ...` end to end (tiny sizes), and `resolve` for spec-driven data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmnasdsl.cli import main
from mmnasdsl.data import open_split, resolve
from mmnasdsl.data.shapes import WORLD_VERSION
from mmnasdsl.lang.errors import DataError
from mmnasdsl.lang.parse import parse

SPEC = """model m {{ d_model = 64 }}
input text = words(max_len = 16, embed = learned(32), lstm)
input image = objects(max = 12, dim = 64)
encoder text = SA FFN
decoder image(guide = text) = SA GA FFN
head {task}
{data}
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_shapes_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["data", "shapes", "--task", "vg", "-o", str(tmp_path), "--scenes", "12", "--seed", "2"],
        capsys,
    )
    assert code == 0 and "test.h5" in out
    code, out, _ = run(["data", "info", str(tmp_path / "train.h5")], capsys)
    assert code == 0
    for text in ("vg", "objects per image", "vocabulary", "vg/gt_box", "images/features"):
        assert text in out


def test_bad_input_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.h5").write_text("junk")
    code, _, err = run(["data", "info", str(tmp_path / "x.h5")], capsys)
    assert code == 1 and "x.h5" in err and "Traceback" not in err
    code, _, err = run(["data", "shapes", "--task", "nope", "-o", str(tmp_path)], capsys)
    assert code == 1 and "--task" in err


def test_import_vqa2_cli_with_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feats = tmp_path / "feats"
    feats.mkdir()
    np.savez(
        feats / "COCO_val2014_000000000009.npz",
        x=np.ones((2048, 3), np.float32),
        bbox=np.zeros((3, 4)),
        image_h=10,
        image_w=20,
    )
    qs = [{"image_id": i, "question": "is it?", "question_id": i} for i in (9, 10)]
    anns = [
        {
            "question_id": i,
            "image_id": i,
            "answer_type": "yes/no",
            "multiple_choice_answer": "yes",
            "answers": [{"answer": "yes"}] * 10,
        }
        for i in (9, 10)
    ]
    (tmp_path / "q.json").write_text(json.dumps({"questions": qs}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": anns}))
    argv = [
        "data",
        "import",
        "vqa2",
        "--questions",
        str(tmp_path / "q.json"),
        "--annotations",
        str(tmp_path / "a.json"),
        "--features",
        str(feats),
        "-o",
        str(tmp_path / "val.h5"),
        "--min-answer-count",
        "1",
    ]
    code, _, err = run(argv, capsys)
    assert code == 1 and "no features for image 10" in err
    code, out, _ = run([*argv, "--skip-missing"], capsys)
    assert code == 0 and "1 samples" in out and "skipped 1" in out
    code, out, _ = run(["data", "info", str(tmp_path / "val.h5")], capsys)
    assert "2048" in out


def test_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMNASDSL_DATA", str(tmp_path / "cache"))
    spec = parse(SPEC.format(task="itm", data="data shapes(scenes = 10, seed = 3)"), "s.mmnas")
    folder = resolve(spec, "itm", None)
    assert folder == tmp_path / "cache" / "shapes" / f"itm-10-3-v{WORLD_VERSION}"  # world-keyed
    assert sorted(p.name for p in folder.iterdir()) == ["test.h5", "train.h5", "val.h5"]
    assert resolve(spec, "itm", str(tmp_path)) == tmp_path  # --data wins
    with pytest.raises(DataError, match="no such data folder"):
        resolve(spec, "itm", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="shapes world has no 'foo' data"):
        resolve(spec, "foo", None)
    assert open_split(folder, "val", spec).max_words == 16
    wide = parse(SPEC.replace("dim = 64", "dim = 2048").format(task="itm", data=""), "w.mmnas")
    with pytest.raises(DataError, match=r"64-d but w\.mmnas declares objects\(dim = 2048\)"):
        open_split(folder, "val", wide)
    h5 = parse(SPEC.format(task="vqa", data=f'data h5(root = "{tmp_path / "nope"}")'), "s.mmnas")
    with pytest.raises(DataError, match="nope"):
        resolve(h5, "vqa", None)
