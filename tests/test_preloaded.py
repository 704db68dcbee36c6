"""The tests' preloaded commands (``preloaded.py``) behave as a new interpreter would: the same
arguments, working folder, environment, output and exit status, signals to their own pid; and
the shell scripts' ``$PYTHON`` client passes its streams, signals and status through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import finish
from preloaded import PreloadedProcess, python_command

REPORT = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "name": __name__,
                  "marker": os.environ.get("PRELOADED_MARKER"), "path0": sys.path[0]}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("PRELOADED_EXIT", "0")))
"""


def run_both(args: list[str], cwd, env) -> tuple[subprocess.CompletedProcess, ...]:
    fresh = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    return fresh, finish(PreloadedProcess(args, cwd, env), timeout=120)


@pytest.mark.parametrize("form", ["script", "-m", "-c"])
def test_a_preloaded_command_sees_what_a_new_interpreter_sees(form, tmp_path):
    (tmp_path / "report.py").write_text(REPORT)
    env = {**os.environ, "PRELOADED_MARKER": "here", "PRELOADED_EXIT": "3"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    args = {
        "script": [str(tmp_path / "report.py"), "a", "--b"],
        "-m": ["-m", "report", "a", "--b"],
        "-c": ["-c", REPORT, "a", "--b"],
    }[form]
    fresh, preloaded = run_both(args, tmp_path, env)
    assert preloaded.returncode == fresh.returncode == 3
    assert json.loads(preloaded.stdout) == json.loads(fresh.stdout)
    assert preloaded.stderr == fresh.stderr == "to stderr\n"


def test_an_uncaught_error_prints_its_traceback_and_exits_1(tmp_path):
    fresh, preloaded = run_both(["-c", "raise ValueError('broken')"], tmp_path, dict(os.environ))
    assert preloaded.returncode == fresh.returncode == 1
    for result in (fresh, preloaded):
        assert result.stderr.startswith("Traceback (most recent call last):")
        assert result.stderr.endswith("ValueError: broken\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_reaches_the_command_and_its_status_says_so(signum, tmp_path):
    code = "import pathlib, time; pathlib.Path('up').touch(); time.sleep(60)"
    process = PreloadedProcess(["-c", code], tmp_path, dict(os.environ))
    deadline = time.monotonic() + 60
    while not (tmp_path / "up").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    assert process.wait(timeout=30) == -signum


def test_the_shell_client_passes_streams_signals_and_status(tmp_path):
    python = python_command()
    script = "import sys; print(sys.stdin.read().upper()); sys.exit(4)"
    done = subprocess.run(
        [python, "-c", script], input="piped", capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (4, "PIPED\n")
    # A here-document script on stdin (``$PYTHON - ARGS <<EOF``, as bench/reproduce.sh does).
    done = subprocess.run(
        [python, "-", "x"],
        input="import sys; print(sys.argv)",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout == "['-', 'x']\n"
    # SIGTERM to the client ends the command it stands for, with the same status.
    waiting = subprocess.Popen(
        [python, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert waiting.stdout.readline() == "up\n"
    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(timeout=30) == -signal.SIGTERM
    waiting.stdout.close()
