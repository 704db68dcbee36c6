"""The project's commands, started by the tests in milliseconds instead of nine seconds.

On a 2-core CPU, a new Python process spends about 9 s of CPU importing torch, torchvision,
Lightning and Hydra before ``train.py`` reads its first override, and the default suite starts
more than a hundred such processes. Here, one server for the session (the pytest-xdist workers
share it) imports them once; each
command the tests start is a child forked from it that runs the script (``train.py``, ``-m
simclr.export``, ``-c CODE``, ``-`` for a script on stdin) as the interpreter would: its own
process, ``__name__ == "__main__"``, the given arguments, environment, working folder and
standard streams, signals delivered to its own pid, exit status as Python's (a negative one
when a signal ended it).

What a fork cannot give is a fresh interpreter: the modules the server imported are not
imported again, and every child shares the server's hash seed. Environment variables that act
when a module is imported (beyond ``PYTHONPATH``, whose new entries and their
``sitecustomize`` are honoured) reach only modules imported after the fork.
``SIMCLR_TESTS_FRESH_PROCESSES=1`` starts every command in a new interpreter instead.

Three roles, stdlib only at import time, so that the client starts fast:
- ``Server`` (``python preloaded.py serve SOCKET``): imports the heavy modules, then forks a
  supervisor for each request; the supervisor forks the command, sends its pid, waits for it
  and sends its exit status.
- ``PreloadedProcess``: the test process's side, with the part of ``subprocess.Popen``'s
  interface the tests use.
- ``python -I -S preloaded.py run SOCKET ARGS...`` (the ``PYTHON`` a shell script is given,
  see :func:`python_command`): a client that lends the command its own standard streams,
  forwards SIGTERM and SIGINT to it, and exits as it did.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
# What the server imports once, before any command: the costly part of every command's start.
PRELOAD = (
    "torch",
    "torchvision",
    "lightning",
    "hydra",
    "sklearn.datasets",
    "tensorboard",
    "timm",
    "simclr.tasks.pretrain",
    "simclr.tasks.finetune",
    "simclr.export",
    "simclr.embed",
)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Where the session's server listens (its folder), for the test processes that did not start it.
SHARED_SERVER = "SIMCLR_TESTS_PRELOADED_SERVER"
# The environment as the test session began, before any test changed it: the server's.
SESSION_ENV = dict(os.environ)
_HEADER = struct.Struct("!I")


def fresh_processes() -> bool:
    return os.environ.get("SIMCLR_TESTS_FRESH_PROCESSES", "") not in ("", "0")


def supported(args: list[str]) -> bool:
    """Whether ``python ARGS`` is a form the server runs: a script, ``-m``, ``-c`` or ``-``."""
    if not args:
        return False
    if args[0] in ("-m", "-c"):
        return len(args) > 1
    return args[0] == "-" or not args[0].startswith("-")


# --- the wire: one request with the command's three standard streams, then lines of JSON ----


def send_request(sock: socket.socket, request: dict, fds: list[int]) -> None:
    payload = json.dumps(request).encode()
    socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], fds)


def receive_request(sock: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
    while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack_from(data)[0]:
        more = sock.recv(1 << 16)
        if not more:
            raise ConnectionError("request cut short")
        data += more
    return json.loads(data[_HEADER.size :]), fds


class Lines:
    """JSON messages, one a line, read from a socket without reading past them."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, b""

    def ready(self, timeout: float | None) -> bool:
        return b"\n" in self.buffer or bool(select.select([self.sock], [], [], timeout)[0])

    def next(self) -> dict:
        while b"\n" not in self.buffer:
            more = self.sock.recv(4096)
            if not more:
                raise ConnectionError("the preloaded server closed the connection")
            self.buffer += more
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def returncode(status: int) -> int:
    """``os.waitpid``'s status as ``subprocess`` reports it."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# --- the server ------------------------------------------------------------------------------


def serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        # An optional extra missing, or a module broken: the command that needs it imports it
        # itself, and reports what is wrong.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    Path(path).with_name("ready").touch()  # listening: what test processes wait for
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable:  # the test process closed our stdin: it has finished
            return
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            supervise(connection)
        connection.close()


def supervise(connection: socket.socket) -> None:
    """In the supervisor: fork the command, send its pid, wait, send its exit status."""
    code = 1
    try:
        request, fds = receive_request(connection)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        pid = os.fork()
        if pid == 0:
            connection.close()
            run_command(request, fds)
        for fd in fds:
            os.close(fd)
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        connection.sendall(json.dumps({"returncode": returncode(status)}).encode() + b"\n")
        code = 0
    finally:
        os._exit(code)


def run_command(request: dict, fds: list[int]) -> None:
    """In the command's process: become ``python ARGS`` in the request's setting; never
    returns."""
    import runpy
    import threading
    import traceback
    import warnings

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    added = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    added = [p for p in added if p not in sys.path]
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.environ.get("PYTHONUNBUFFERED"):
        sys.stdout.reconfigure(line_buffering=True, write_through=True)
        sys.stderr.reconfigure(line_buffering=True, write_through=True)
    reseed(os.environ.get("OMP_NUM_THREADS"))
    args = request["args"]
    code = 0
    try:
        sys.path[1:1] = added
        for folder in added:
            if (Path(folder) / "sitecustomize.py").is_file():
                runpy.run_path(str(Path(folder) / "sitecustomize.py"), run_name="sitecustomize")
                break
        if args[0] == "-m":
            sys.argv, sys.path[0] = [args[1], *args[2:]], os.getcwd()
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] in ("-c", "-"):
            sys.argv, sys.path[0] = [args[0], *args[2 if args[0] == "-c" else 1 :]], ""
            source = args[1] if args[0] == "-c" else sys.stdin.read()
            exec(
                compile(source, "<string>" if args[0] == "-c" else "<stdin>", "exec"),
                {"__name__": "__main__", "__builtins__": __builtins__},
            )
        else:
            sys.argv, sys.path[0] = list(args), str(Path(args[0]).resolve().parent)
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:  # the interpreter's own way out: threads joined, exit functions run, streams flushed
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


def reseed(threads: str | None) -> None:
    """A new process draws new random states; forked ones would share the server's."""
    import numpy as np
    import torch

    np.random.seed(int.from_bytes(os.urandom(4), "little"))
    torch.seed()
    if threads:
        torch.set_num_threads(int(threads))


# --- the test process's side -----------------------------------------------------------------


class Server:
    """The server a test process sends its commands to: the session's, which the pytest process
    that hands tests to workers started for all of them (:func:`start_shared`), or one of this
    process's own, started at first use. A server ends with the process that started it."""

    instance: Server | None = None

    def __init__(self, folder: str | None = None):
        """The server listening in ``folder`` (started by another process), or a new one."""
        self.process: subprocess.Popen | None = None
        if folder is None:
            folder = tempfile.mkdtemp(prefix="simclr-preloaded-")
            self.process = subprocess.Popen(
                [sys.executable, str(HERE), "serve", str(Path(folder) / "socket")],
                cwd=HERE.parent.parent,
                env=SESSION_ENV,
                stdin=subprocess.PIPE,
            )
            atexit.register(self.stop)
        self.folder = Path(folder)
        self.socket = str(self.folder / "socket")

    @classmethod
    def get(cls) -> Server:
        if cls.instance is None or (
            cls.instance.process is not None and cls.instance.process.poll() is not None
        ):
            shared = os.environ.get(SHARED_SERVER)
            cls.instance = cls(shared) if shared else cls()
        cls.instance.wait_ready()
        return cls.instance

    def wait_ready(self) -> None:
        """Return once the server listens (its ``ready`` file), after its imports."""
        deadline = time.monotonic() + 300
        while not (self.folder / "ready").exists():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("the preloaded server did not start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the preloaded server in {self.folder} never started")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_shared() -> None:
    """Start the session's server for the worker processes to come, without waiting for its
    imports (they overlap the workers' collection): one server's imports instead of one a
    worker. The workers find it through the environment they inherit."""
    server = Server()
    Server.instance = server
    os.environ[SHARED_SERVER] = str(server.folder)


def python_command() -> str:
    """An executable for shell scripts' ``$PYTHON``: ``python ARGS`` through the server (a
    new interpreter when ``SIMCLR_TESTS_FRESH_PROCESSES`` is set)."""
    if fresh_processes():
        return sys.executable
    server = Server.get()
    shim = server.folder / "python"
    if not shim.exists():
        shim.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -I -S "{HERE}" run "{server.socket}" "$@"\n'
        )
        shim.chmod(0o755)
    return str(shim)


class PreloadedProcess:
    """``python ARGS`` forked from the server, its output captured in files: the part of
    ``subprocess.Popen``'s interface the tests use (``pid``, ``poll``, ``wait``,
    ``communicate``, ``send_signal``, ``terminate``, ``kill``, ``returncode``)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        self.args = [sys.executable, *args]
        self.returncode: int | None = None
        # Read by communicate(); closed with this object, as Popen's pipes are.
        self._outputs = [tempfile.TemporaryFile() for _ in range(2)]  # noqa: SIM115
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(Server.get().socket)
        self._lines = Lines(self._sock)
        with open(os.devnull, "rb") as null:
            streams = [null.fileno(), *(f.fileno() for f in self._outputs)]
            request = {"args": list(args), "cwd": str(cwd), "env": env}
            send_request(self._sock, request, streams)
        self.pid = self._lines.next()["pid"]

    def poll(self) -> int | None:
        if self.returncode is None and self._lines.ready(0):
            self._finished()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not self._lines.ready(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._finished()
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        texts = []
        for output in self._outputs:
            output.seek(0)
            texts.append(output.read().decode(errors="replace"))
        return texts[0], texts[1]

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _finished(self) -> None:
        self.returncode = self._lines.next()["returncode"]
        self._sock.close()


def client(path: str, args: list[str]) -> None:
    """``python ARGS`` through the server at ``path``, as this process: its standard streams,
    the signals it is sent, its exit status."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    send_request(sock, {"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])
    lines = Lines(sock)
    pid = lines.next()["pid"]
    for signum in FORWARDED:
        signal.signal(signum, lambda number, _frame: os.kill(pid, number))
    code = lines.next()["returncode"]
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        client(sys.argv[2], sys.argv[3:])
