"""``python -m simclr.data.prepare``: shards that hold the source's images and labels, split as
the folder loaders split them, verified, and resumable after a kill."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image
from shard_files import NUM_TRAIN, write_photo_folder

from conftest import ROOT
from simclr.data.prepare import main, prepare
from simclr.data.sources import load_dataset
from simclr.data.streaming import require_litdata
from simclr.data.streaming.manifest import MANIFEST_NAME
from simclr.data.streaming.writer import read_back
from simclr.errors import ConfigError, DataError

litdata = pytest.importorskip("litdata")


def samples(folder) -> dict[str, dict]:
    return {s["name"]: s for s in litdata.StreamingDataset(str(folder))}


def test_prepare_keeps_jpegs_shrinks_large_ones_and_verifies(tmp_path):
    written = write_photo_folder(tmp_path / "photos")
    out = tmp_path / "shards"
    manifest = prepare(str(tmp_path / "photos"), str(out), max_side=64, progress=False)
    assert manifest["complete"] and manifest["num_classes"] == NUM_TRAIN
    assert {s: manifest["splits"][s]["count"] for s in manifest["splits"]} == {
        "train": NUM_TRAIN,
        "val": 6,
        "test": 6,
    }
    assert manifest["splits"]["train"]["labels"] == list(range(NUM_TRAIN))
    stored = samples(out / "train")
    small = written["train"][0]
    assert bytes(stored["train/c00/0.JPEG"]["image"]) == small.read_bytes()  # not encoded again
    with Image.open(io.BytesIO(bytes(stored["train/c01/0.JPEG"]["image"]))) as image:
        assert max(image.size) == 64 and image.format == "JPEG"
    with Image.open(io.BytesIO(bytes(stored["train/c02/0.png"]["image"]))) as image:
        assert image.format == "JPEG"  # a PNG is stored as JPEG
    assert stored["train/c05/0.JPEG"]["label"] == 5
    assert main(["--verify", str(tmp_path / "photos"), str(out)]) == 0
    # A byte changed in a chunk: the digest no longer matches the manifest.
    chunk = next((out / "train").glob("chunk-*.bin"))
    data = bytearray(chunk.read_bytes())
    data[-10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert main(["--verify", str(tmp_path / "photos"), str(out)]) == 2


def test_prepare_refuses_other_shards_and_non_empty_folders(tmp_path):
    write_photo_folder(tmp_path / "photos")
    out = tmp_path / "shards"
    prepare(str(tmp_path / "photos"), str(out), progress=False)
    # The same command again: nothing to do.
    assert prepare(str(tmp_path / "photos"), str(out), progress=False)["complete"]
    with pytest.raises(DataError, match=r"other images or options.*--overwrite"):
        prepare(str(tmp_path / "photos"), str(out), max_side=32, progress=False)
    assert prepare(str(tmp_path / "photos"), str(out), max_side=32, overwrite=True)["complete"]
    with pytest.raises(DataError, match="not empty and holds no shards"):
        prepare(str(tmp_path / "photos"), str(tmp_path / "photos"), progress=False)
    with pytest.raises(ConfigError, match="local folder"):
        prepare(str(tmp_path / "photos"), "s3://bucket/shards", progress=False)


def test_an_unreadable_image_is_named_and_the_shards_stay_unfinished(tmp_path):
    written = write_photo_folder(tmp_path / "photos")
    written["train"][3].write_bytes(written["train"][3].read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=r"could not be read: train/c03/0.JPEG"):
        prepare(str(tmp_path / "photos"), str(tmp_path / "shards"), progress=False)
    manifest = json.loads((tmp_path / "shards" / MANIFEST_NAME).read_text())
    assert not manifest["complete"]
    # data=streaming refuses unfinished shards, and a folder without shards, saying what to run.
    with pytest.raises(DataError, match=r"not finished.*rerun python -m simclr\.data\.prepare"):
        load_dataset("streaming", str(tmp_path / "shards"), 32)
    with pytest.raises(DataError, match=r"no prepared shards.*python -m simclr\.data\.prepare"):
        load_dataset("streaming", str(tmp_path / "photos"), 32)


# Started in its own process group, so that the kill reaches litdata's workers too; every
# image takes 0.15 s, so the kill lands while the training split is being written.
SLOW_PREPARE = """
import sys, time
from simclr.data.streaming import writer
encode = writer.Encoder.encode
writer.Encoder.encode = lambda self, path: (time.sleep(0.15), encode(self, path))[1]
from simclr.data.prepare import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_prepare_rerun_keeps_its_chunks_and_finishes(tmp_path):
    write_photo_folder(tmp_path / "photos")
    out = tmp_path / "shards"
    args = [str(tmp_path / "photos"), str(out), "--chunk-bytes", "6kB"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREPARE, *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = out / "train" / ".checkpoints" / "checkpoint-0.json"
    deadline = time.monotonic() + 120
    while not (checkpoint.is_file() and json.loads(checkpoint.read_text())["inputs_done"] >= 6):
        assert process.poll() is None and time.monotonic() < deadline, "no chunk was written"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "train" / "index.json").exists()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "train").glob("*.bin")}
    assert before
    assert main(args) == 0
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "train").glob("*.bin")}
    assert all(after[name] == kept for name, kept in before.items())  # not written again
    assert len(after) > len(before)
    assert read_back(str(out / "train"))["count"] == NUM_TRAIN
    assert json.loads((out / MANIFEST_NAME).read_text())["complete"]


def test_a_missing_litdata_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "litdata", None)
    with pytest.raises(ConfigError, match=r"simclr\[streaming\]"):
        require_litdata()
