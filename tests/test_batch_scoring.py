"""Batch scoring with ``otxlite predict``: shards, resumable JSON lines, --max-errors, list files and globs, Ray.

The quick tests check the bookkeeping alone (shard assignment, list files, the JSON-lines file's recovery, bad
options); the slow ones score real images with the session's exported model (and Ray: a local one of 2 workers,
and a cluster started apart, reached with --ray-address)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otxlite.app.predict import predict
from otxlite.core.errors import OtxliteError
from otxlite.runtime.batch import JsonlLog, Shard
from otxlite.runtime.images import InputImage, named_inputs


def otxlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


def lines(run: Path) -> list[str]:
    """The lines of a run's predictions.jsonl, sorted (engines and shards may finish images in another order)."""
    return sorted((run / "predictions.jsonl").read_text().splitlines())


# Quick: the bookkeeping

def test_a_shard_holds_the_same_names_whatever_else_is_there() -> None:
    images = [InputImage(f"photos/img_{i:05d}.jpg", Path(f"/data/img_{i:05d}.jpg")) for i in range(3000)]
    more = images[::2] + [InputImage(f"photos/new_{i}.jpg", Path(f"/data/new_{i}.jpg")) for i in range(500)]
    shards = [Shard.parse(f"{i}/4").select(images) for i in range(4)]
    assert sorted(i.name for shard in shards for i in shard) == [i.name for i in images]  # each in one shard
    assert all(650 < len(shard) < 850 for shard in shards)  # about a quarter each
    for index, shard in enumerate(shards):  # files added and removed: the others stay in their shard
        kept = {i.name for i in Shard(index, 4).select(more)}
        assert {i.name for i in shard} & {i.name for i in more} == kept - {f"photos/new_{i}.jpg" for i in range(500)}
    # The same in every process and version (no per-process hash seed): blake2b of the name, modulo N
    digest = hashlib.blake2b(b"photos/img_00000.jpg", digest_size=8).digest()
    assert images[0] in shards[int.from_bytes(digest, "big") % 4]


@pytest.mark.parametrize("text", ["3/2", "2/2", "x", "1/0", "-1/2", "1/2/3", "1", ""])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(OtxliteError, match=r"--shard .*0 <= I < N"):
        Shard.parse(text)


def test_shard_parse() -> None:
    assert Shard.parse("3/4") == Shard(3, 4) and Shard.parse("0/1").holds("anything")


def test_list_file_names_images_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png", "notes.txt"):
        (tmp_path / "photos" / name).write_bytes(b"x")
    outside = tmp_path / "c.jpg"
    outside.write_bytes(b"x")
    listing = tmp_path / "photos" / "list.txt"
    listing.write_text(f"# the batch\nsub/b.png\n\n  a.jpg  \nnotes.txt\na.jpg\n{outside}\n")
    images, skipped = named_inputs(f"@{listing}")
    assert [(i.name, i.path) for i in images] == [("sub/b.png", tmp_path / "photos" / "sub" / "b.png"),
                                                 ("a.jpg", tmp_path / "photos" / "a.jpg"), (str(outside), outside)]
    assert skipped == [tmp_path / "photos" / "notes.txt"]


def test_bad_list_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(OtxliteError, match="names no images"):
        named_inputs(f"@{empty}")
    (tmp_path / "here.jpg").write_bytes(b"x")
    missing = tmp_path / "missing.txt"
    missing.write_text("here.jpg\ngone.jpg\nlost/too.png\n")
    with pytest.raises(OtxliteError, match=r"2 of its 3 files do not exist: gone.jpg, lost/too.png"):
        named_inputs(f"@{missing}")
    with pytest.raises(OtxliteError, match="cannot read the list file"):
        named_inputs(f"@{tmp_path / 'nowhere.txt'}")


def test_glob_names_are_relative_to_its_fixed_part(tmp_path: Path) -> None:
    for name in ("2024/a.jpg", "2024/deep/b.jpg", "2023/c.jpg"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(b"x")
    images, _ = named_inputs(str(tmp_path / "photos" / "2024" / "**" / "*.jpg"))
    assert [i.name for i in images] == ["a.jpg", "deep/b.jpg"]
    images, _ = named_inputs(str(tmp_path / "photos" / "*" / "*.jpg"))
    assert [i.name for i in images] == ["2023/c.jpg", "2024/a.jpg"]


def test_jsonl_log_drops_a_torn_last_line_and_never_repeats_a_key(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    log = JsonlLog(path, "filename")
    for name in ("a", "b", "c"):
        assert log.append(name, json.dumps({"filename": name, "boxes": []}))
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"filename": "d", "bo')  # killed in the middle of a write
    log = JsonlLog(path, "filename")
    assert log.keys == {"a", "b", "c"} and path.read_bytes() == whole  # the torn line is cut off
    assert not log.append("b", json.dumps({"filename": "b", "boxes": [1]}))  # already there: not written again
    assert log.append("d", json.dumps({"filename": "d", "boxes": []}))
    log.close()
    assert [json.loads(line)["filename"] for line in path.read_text().splitlines()] == ["a", "b", "c", "d"]


def test_jsonl_log_refuses_a_file_it_did_not_write(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"filename": "a"}\nnot json\n{"filename": "b"}\n')
    with pytest.raises(OtxliteError, match="line 2: not a record otxlite wrote"):
        JsonlLog(path, "filename")


def test_a_run_with_nothing_to_write_leaves_no_file(tmp_path: Path) -> None:
    JsonlLog(tmp_path / "errors.jsonl", "file").close()
    assert not (tmp_path / "errors.jsonl").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"shard": "3/2"}, "--shard 3/2"),
    ({"shard": "x"}, "--shard x"),
    ({"max_errors": -1}, "--max-errors -1: give a whole number of at least 0"),
    ({"workers": 2}, "--workers and --ray-address are for --engine ray"),
    ({"engine": "spark"}, "--engine spark: choose process or ray"),
    ({"engine": "ray", "threads": 0}, "--threads 0"),
])
def test_bad_options_are_refused_before_anything_is_read(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(OtxliteError, match=message.replace("-", r"\-")):
        predict(tmp_path / "no_model.xml", str(tmp_path / "no_images"), tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_missing_ray_is_one_paragraph(monkeypatch: pytest.MonkeyPatch) -> None:
    from otxlite.runtime import ray_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(OtxliteError, match=r"pip install 'otxlite\[ray\]'"):
        ray_engine.import_ray()


# Slow: real scoring with the session's exported model

@pytest.fixture()
def photos(sample_dataset: Path, tmp_path: Path) -> Path:
    """The sample dataset's 32 images (train and val), in two folders."""
    folder = tmp_path / "photos"
    for subset in ("train", "val"):
        shutil.copytree(sample_dataset / "images" / subset, folder / subset)
    return folder


@pytest.fixture()
def plain_run(exported_ir: Path, photos: Path, tmp_path: Path) -> Path:
    """One run of the default engine over ``photos``, overlays off."""
    result = predict(exported_ir, str(photos), tmp_path / "plain", confidence_threshold=0.1, overlays=False)
    assert result.images == 32 and result.detections > 0 and result.overlays is None
    return tmp_path / "plain"


def test_the_union_of_the_shards_is_the_unsharded_run(exported_ir: Path, photos: Path, plain_run: Path,
                                                       tmp_path: Path) -> None:
    shards = []
    for index in range(3):
        predict(exported_ir, str(photos), tmp_path / f"shard{index}", confidence_threshold=0.1, shard=f"{index}/3")
        shards.append(lines(tmp_path / f"shard{index}"))
    assert all(shards) and sum(map(len, shards)) == 32  # each image in one shard only
    assert sorted(line for shard in shards for line in shard) == lines(plain_run)
    entries = json.loads((plain_run / "predictions.json").read_text())
    assert [e["filename"] for e in entries] == sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))


def test_a_torn_output_resumes_to_the_clean_run(exported_ir: Path, photos: Path, plain_run: Path,
                                                tmp_path: Path) -> None:
    (photos / "val" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "resumed"
    first = predict(exported_ir, str(photos), out, confidence_threshold=0.1, overlays=False)
    assert first.unreadable == 1 and lines(out) == lines(plain_run)
    clean = (out / "predictions.jsonl").read_bytes()
    cut = clean.index(b"\n", len(clean) // 3) + 40  # a third of the lines, and 40 bytes of the next one
    (out / "predictions.jsonl").write_bytes(clean[:cut])
    kept = clean[:cut].count(b"\n")
    second = predict(exported_ir, str(photos), out, confidence_threshold=0.1, overlays=False)
    assert second.resumed == kept + 1 and second.images == 32 - kept and second.unreadable == 0
    assert (out / "predictions.jsonl").read_bytes() == clean  # the same lines in the same order, none twice
    assert len((out / "errors.jsonl").read_text().splitlines()) == 1  # the broken image: recorded once
    with pytest.raises(OtxliteError, match="confidence_threshold 0.1 before, 0.3 now"):  # would mix two thresholds
        predict(exported_ir, str(photos), out, confidence_threshold=0.3, overlays=False)
    assert (out / "predictions.jsonl").read_bytes() == clean


def test_a_killed_run_resumes_without_duplicates(exported_ir: Path, photos: Path, plain_run: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "otxlite.cli", "predict", "--load-weights", str(exported_ir), "-i", str(photos),
               "-o", str(out), "--confidence-threshold", "0.1", "--overlays"]  # overlays: slower, to be met midway
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    written = out / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while not (written.exists() and written.read_bytes().count(b"\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    at_kill = written.read_bytes().count(b"\n")
    assert 3 <= at_kill < 32, "the run was not stopped midway"
    (out / "overlays" / ".val_0009.k1ll3d.tmp.png").write_bytes(b"\x89PNG")  # as if killed mid-write (made sure)
    result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(photos), "-o", str(out),
                     "--confidence-threshold", "0.1", "--overlays")
    assert result.returncode == 0, result.stderr
    assert "already in the output from an earlier run" in result.stdout
    assert lines(out) == lines(plain_run)  # each image exactly once, as in a clean run
    assert len(list((out / "overlays").glob("*.png"))) == 32  # the temporaries of the killed run are gone


def test_max_errors_stops_the_run_and_a_rerun_continues(exported_ir: Path, photos: Path, plain_run: Path,
                                                        tmp_path: Path) -> None:
    for name in ("bad1.jpg", "bad2.png", "bad3.jpg"):
        (photos / "val" / name).write_bytes(b"")
    out = tmp_path / "errors"
    result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(photos), "-o", str(out),
                     "--confidence-threshold", "0.1", "--no-overlays", "--max-errors", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "2 images could not be read, more than --max-errors 1: stopped" in " ".join(result.stderr.split())
    assert len((out / "errors.jsonl").read_text().splitlines()) == 2
    result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(photos), "-o", str(out),
                     "--confidence-threshold", "0.1", "--no-overlays", "--max-errors", "3")
    assert result.returncode == 0, result.stderr
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["file"] for e in errors) == ["val/bad1.jpg", "val/bad2.png", "val/bad3.jpg"]
    assert lines(out) == lines(plain_run)


def test_list_files_and_globs_score_the_images_they_name(exported_ir: Path, photos: Path, plain_run: Path,
                                                         tmp_path: Path) -> None:
    by_name = {json.loads(line)["filename"]: json.loads(line)["boxes"] for line in lines(plain_run)}
    chosen = sorted(by_name)[::5]
    (photos / "list.txt").write_text("".join(f"{name}\n" for name in chosen))
    predict(exported_ir, f"@{photos / 'list.txt'}", tmp_path / "listed", confidence_threshold=0.1)
    assert {json.loads(line)["filename"]: json.loads(line)["boxes"] for line in lines(tmp_path / "listed")} == \
        {name: by_name[name] for name in chosen}
    predict(exported_ir, str(photos / "**" / "val_*.jpg"), tmp_path / "globbed", confidence_threshold=0.1)
    assert {json.loads(line)["filename"]: json.loads(line)["boxes"] for line in lines(tmp_path / "globbed")} == \
        {name: boxes for name, boxes in by_name.items() if name.startswith("val/")}


def test_overlays_are_a_choice(exported_ir: Path, photos: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    import otxlite.app.predict as module

    images = str(photos / "val")
    assert predict(exported_ir, images, tmp_path / "off", overlays=False).overlays is None
    assert not (tmp_path / "off" / "overlays").exists()
    drawn = predict(exported_ir, images, tmp_path / "on", overlays=True).overlays
    assert len(list(drawn.glob("*.png"))) == 8
    monkeypatch.setattr(module, "OVERLAY_LIMIT", 7)  # the default: drawn for up to OVERLAY_LIMIT images only
    assert predict(exported_ir, images, tmp_path / "many").overlays is None
    assert not (tmp_path / "many" / "overlays").exists()


def test_ray_with_two_workers_scores_as_the_plain_run(exported_ir: Path, photos: Path, plain_run: Path,
                                                      tmp_path: Path) -> None:
    result = predict(exported_ir, str(photos), tmp_path / "ray", confidence_threshold=0.1, overlays=False,
                     engine="ray", workers=2, threads=1)
    assert result.images == 32
    assert lines(tmp_path / "ray") == lines(plain_run)
    assert (tmp_path / "ray" / "predictions.json").read_text() == (plain_run / "predictions.json").read_text()


RAY_CLI = Path(sys.executable).parent / "ray"


@pytest.fixture()
def ray_cluster() -> Iterator[str]:
    """The address of a Ray cluster started apart from the test (``ray start --head``, 2 CPUs), stopped after it."""
    with socket.socket() as probe:  # a free port for the cluster's control store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = subprocess.run([str(RAY_CLI), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                             capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY_CLI), "stop", "--force"], capture_output=True)


def test_ray_address_scores_on_a_cluster_started_apart(exported_ir: Path, photos: Path, plain_run: Path,
                                                       ray_cluster: str, tmp_path: Path) -> None:
    result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(photos), "-o", str(tmp_path / "cluster"),
                     "--confidence-threshold", "0.1", "--no-overlays", "--engine", "ray", "--ray-address", ray_cluster)
    assert result.returncode == 0, result.stderr
    assert lines(tmp_path / "cluster") == lines(plain_run)
    status = subprocess.run([str(RAY_CLI), "status", "--address", ray_cluster], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr  # the cluster outlives the run: otxlite only disconnected from it


class _Cluster:
    """What ``_actor_sizes`` reads of Ray: the alive machines and their CPUs."""

    def __init__(self, *cpus: int) -> None:
        self.cpus = cpus

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": float(n)}} for n in self.cpus] + [{"Alive": False, "Resources": {}}]


def test_ray_workers_default_to_one_per_machine_and_must_fit() -> None:
    from otxlite.runtime.ray_engine import _actor_sizes

    assert _actor_sizes(_Cluster(16, 16, 16), None, None, "auto") == (3, 16)
    assert _actor_sizes(_Cluster(2), 2, None, None) == (2, 1)
    assert _actor_sizes(_Cluster(16, 8), 6, None, "auto") == (6, 4)
    with pytest.raises(OtxliteError, match=r"--workers 3 x --threads 1: the local Ray of this machine has room for 2"):
        _actor_sizes(_Cluster(2), 3, None, None)
    with pytest.raises(OtxliteError, match="room for 0 such workers"):
        _actor_sizes(_Cluster(8, 8), 1, 12, "auto")  # 12 threads fit on no 8-core machine
