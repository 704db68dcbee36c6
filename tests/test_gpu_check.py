"""bench/gpu_check.py's dry pass (the CPU as the device, tiny sizes), so that the GPU check
cannot rot while no GPU is lent: every check reports PASS into the JSON file, and checks made
wrong on purpose report FAIL and exit status 1."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, finish, start_python
from preloaded import python_command

# One make test worker takes this whole file: its module fixture
# (the dry passes) is built once.
pytestmark = pytest.mark.xdist_group("test_gpu_check")

CHECK = str(ROOT / "bench" / "gpu_check.py")
# Every check the GPU run makes, in its order; one missing from the report fails the test.
CHECKS = [
    "augmentation",
    "decode_jpeg",
    "device_decode",
    "crop_first",
    "fp32",
    "bf16",
    "channels_last",
    "compile",
    "ddp_sync_batchnorm",
    "speed",
]
WRONG = ["augmentation", "channels_last"]


@pytest.fixture(scope="module")
def dry_passes(tmp_path_factory):
    """The whole dry pass, and one with WRONG's candidates made wrong, started at once (one
    thread each): name -> (process, its JSON report)."""
    folder = tmp_path_factory.mktemp("gpu_check")
    wrong = ",".join(WRONG)
    arguments = {
        "whole": [],
        "perturbed": ["--only", wrong, "--perturb", wrong],
    }
    # The speed check's bench/gpu.py runs as $PYTHON: preloaded too.
    env = {"PYTHON": python_command()}
    passes = {
        name: (start_python([CHECK, "--dry", "--out", f"{name}.json", *args], folder, env), folder)
        for name, args in arguments.items()
    }
    yield {name: (process, cwd / f"{name}.json") for name, (process, cwd) in passes.items()}
    for process, _ in passes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_dry_pass_reports_every_check_as_passed(dry_passes):
    process, out = dry_passes["whole"]
    done = finish(process, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry"] and report["passed"]
    assert [check["name"] for check in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert check["passed"] and check["line"].startswith(f"PASS {check['name']}: ")
        assert check["line"] in done.stdout
        assert check["tolerance"] and check["tolerance"].keys() <= check["measured"].keys()
    by_name = {check["name"]: check for check in report["checks"]}
    for name in ("fp32", "bf16", "channels_last", "compile", "ddp_sync_batchnorm"):
        trajectories = by_name[name]["reference_losses"], by_name[name]["candidate_losses"]
        assert [len(losses) for losses in trajectories] == [report["sizes"]["steps"]] * 2
    assert any(name.endswith("_images_per_s") for name in by_name["speed"]["figures"])


def test_checks_made_wrong_on_purpose_fail(dry_passes):
    """A one-pixel shift of the augmented views, and a training run at twice the learning
    rate, exceed their tolerances: the comparisons can see a fault."""
    process, out = dry_passes["perturbed"]
    done = finish(process, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert not report["passed"] and report["perturbed"] == WRONG
    assert [check["name"] for check in report["checks"]] == WRONG
    for check in report["checks"]:
        assert not check["passed"] and f"FAIL {check['name']}: " in done.stdout
