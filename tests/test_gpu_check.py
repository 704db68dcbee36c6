"""bench/gpu_check.py's dry pass (the CPU as the device, tiny sizes), so that the GPU check
cannot rot while no GPU is lent: every check reports PASS into the JSON file, and a check made
wrong on purpose reports FAIL and exit status 1."""

from __future__ import annotations

import json

from conftest import ROOT, finish, start_python

CHECK = str(ROOT / "bench" / "gpu_check.py")
# Every check the GPU run makes; one missing from the report fails the test.
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


def test_dry_pass_reports_every_check_as_passed(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = finish(start_python([CHECK, "--dry", "--out", str(out)], tmp_path), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry"] and report["passed"]
    assert [check["name"] for check in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert check["passed"] and check["line"].startswith(f"PASS {check['name']}: ")
        assert check["line"] in done.stdout
        assert check["tolerance"] and check["tolerance"].keys() <= check["measured"].keys()
    by_name = {check["name"]: check for check in report["checks"]}
    steps = report["sizes"]["steps"]
    assert len(by_name["bf16"]["reference_losses"]) == len(by_name["bf16"]["candidate_losses"])
    assert len(by_name["bf16"]["candidate_losses"]) == steps
    assert any(name.endswith("_images_per_s") for name in by_name["speed"]["figures"])


def test_a_check_made_wrong_on_purpose_fails(tmp_path):
    """A one-pixel shift of the augmented views and a training run at twice the learning rate
    must exceed their tolerances: the comparisons can see a fault."""
    out = tmp_path / "gpu_check.json"
    wrong = "augmentation,channels_last"
    args = [CHECK, "--dry", "--out", str(out), "--only", wrong, "--perturb", wrong]
    done = finish(start_python(args, tmp_path), timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert not report["passed"] and report["perturbed"] == ["augmentation", "channels_last"]
    for check in report["checks"]:
        assert not check["passed"] and f"FAIL {check['name']}: " in done.stdout
