"""Folders written whole (momentum_gs.io.folders): an export killed midway leaves no file where the finished
export goes, the next export leaves exactly a clean export's files, and a folder of someone else's files is
refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from momentum_gs.errors import UserError
from momentum_gs.io.folders import MARK, written_whole
from tests.helpers.tiny_training import train_tiny

KILLED_EXPORT = """
import os, sys
from momentum_gs.export.tiles import blocks
from momentum_gs.export.tiles.gltf import save_glb
real, count = blocks.write_tiles, [0]
def dying(gaussians, path, compression):
    save_glb(gaussians, path, compression)
    count[0] += 1
    if count[0] == int(sys.argv[3]):
        os._exit(9)  # as a kill: nothing runs after it
blocks.write_tiles = lambda *args, **kwargs: real(*args, **{**kwargs, "content": dying})
from momentum_gs.cli import main
sys.exit(main(["export", sys.argv[1], "--format", "3dtiles", "--out", sys.argv[2], "--tile-size", "64"]))
"""


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def export(run: Path, out: Path, die_after: int | None = None) -> int:
    if die_after is None:
        command = [sys.executable, "-m", "momentum_gs.cli", "export", str(run), "--format", "3dtiles", "--out",
                   str(out), "--tile-size", "64"]
    else:
        command = [sys.executable, "-c", KILLED_EXPORT, str(run), str(out), str(die_after)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300).returncode


@pytest.fixture(scope="module")
def run(tiny_scene, tmp_path_factory):
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("whole") / "run")


@pytest.mark.slow
def test_a_killed_export_then_a_new_one_leaves_exactly_a_clean_exports_files(run, tmp_path):
    assert export(run, tmp_path / "clean") == 0
    clean = files(tmp_path / "clean")
    assert len(clean) > 10 and MARK in clean
    out = tmp_path / "out"
    assert export(run, out, die_after=5) == 9
    assert not out.exists()  # nothing where the export goes; its leftovers are beside it, hidden
    assert export(run, out) == 0
    assert files(out) == clean
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # the leftovers removed
    assert export(run, out, die_after=3) == 9  # killed over a finished export: that one stays as it was
    assert files(out) == clean


def test_a_finished_folder_replaces_the_old_one_whole_and_a_failure_keeps_it(tmp_path):
    out = tmp_path / "tiles"
    with written_whole(out, "a test export", {"a.txt"}) as work:
        (work / "a.txt").write_text("one")
        (work / "b.txt").write_text("one")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == [MARK, "a.txt", "b.txt"]
    with pytest.raises(RuntimeError):
        with written_whole(out, "a test export", {"a.txt"}) as work:
            (work / "a.txt").write_text("two")
            raise RuntimeError("killed by a bug")
    assert (out / "a.txt").read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["tiles"]
    with written_whole(out, "a test export", {"a.txt"}) as work:
        (work / "a.txt").write_text("three")
    assert sorted(p.name for p in out.iterdir()) == [MARK, "a.txt"]  # b.txt went with the old folder


def test_someone_elses_files_are_refused_and_an_unmarked_export_of_ours_replaced(tmp_path):
    out = tmp_path / "tiles"
    out.mkdir()
    (out / "holiday.jpg").write_text("a photo")
    with pytest.raises(UserError, match="holds files that are not a test export"):
        with written_whole(out, "a test export", {"tileset.json", "tiles"}):
            pass
    assert (out / "holiday.jpg").exists()
    (out / "holiday.jpg").unlink()
    (out / "tileset.json").write_text("{}")  # an export from before the mark
    with written_whole(out, "a test export", {"tileset.json", "tiles"}) as work:
        (work / "tileset.json").write_text("{ }")
    assert (out / "tileset.json").read_text() == "{ }"


def test_the_leftovers_of_a_killed_write_are_removed_by_the_next(tmp_path):
    out = tmp_path / "tiles"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".tiles.partial{int(dead.stdout)}"
    leftover.mkdir()
    (leftover / "t.glb").write_text("half")
    mine = tmp_path / f".tiles.partial{os.getppid()}"  # a live process's: left alone
    mine.mkdir()
    with written_whole(out, "a test export", set()) as work:
        (work / "x").write_text("x")
    assert not leftover.exists() and mine.exists()
    shutil.rmtree(mine)


KILLED_EVAL = """
import os, sys
from momentum_gs.eval import evaluate
real, count = evaluate.save_side_by_side, [0]
def dying(*args):
    real(*args)
    count[0] += 1
    if count[0] == 2:
        os._exit(9)
evaluate.save_side_by_side = dying
evaluate.evaluate_run(sys.argv[1])
"""


@pytest.mark.slow
def test_an_evaluation_killed_midway_leaves_the_last_renders_whole(run, tmp_path):
    from momentum_gs.eval.evaluate import evaluate_run

    evaluate_run(run)
    renders = run / "eval" / "renders"
    clean = files(renders)
    assert len(clean) > 2 and MARK in clean
    gone = next(name for name in clean if name != MARK)
    (renders / gone).unlink()  # tell the old folder apart
    killed = subprocess.run([sys.executable, "-c", KILLED_EVAL, str(run)], capture_output=True, timeout=300)
    assert killed.returncode == 9
    assert files(renders) == [name for name in clean if name != gone]  # the last complete folder, untouched
    evaluate_run(run)
    assert files(renders) == clean and [p.name for p in renders.parent.iterdir() if ".partial" in p.name] == []
