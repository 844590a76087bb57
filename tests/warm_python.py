"""A Python interpreter that has already imported torch and MLflow (and the parts of torch and
SciPy that transformers' model code pulls in), and forks a new process for each command it is
sent: what `tests/processes.py` runs the CLI and the benchmarks through.

Each command is a real process of its own (its own arguments, working folder, environment,
stdout and stderr, exit status), started in a fraction of the seconds a cold `python` takes to
import the libraries again. Only libraries that read no per-command setting at import are loaded
first: `datasets`, `huggingface_hub`, `transformers` and Ray read their caches and modes from the
environment when imported, so each command imports them itself, under its own environment.

Protocol, one JSON line each way: a request `{"argv", "cwd", "env", "stdout", "stderr"}` (argv as
after `python`: `["-m", "module", ...]` or `["script.py", ...]`; stdout and stderr are file paths)
is answered by `{"pid": ...}` as soon as the command starts and `{"status": ...}` when it ends
(a negative status: killed by that signal). The server ends when its stdin closes.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

import mlflow  # noqa: F401
import mlflow.tracking  # noqa: F401
import numpy  # noqa: F401
import pyarrow  # noqa: F401
import scipy.linalg  # noqa: F401
import scipy.optimize  # noqa: F401
import sympy  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401  (what transformers' model loading imports: 2 s a command)
import torch.distributed.tensor  # noqa: F401
import torch.fx.experimental.symbolic_shapes  # noqa: F401
import yaml  # noqa: F401

# Imported by each command under its own environment, never here (see the docstring).
READ_AT_IMPORT = ("datasets", "huggingface_hub", "transformers", "ray")


def _command(request: dict) -> None:
    """Become the command `request` describes; never returns (the command's exit ends it)."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.argv = list(request["argv"])
    if sys.argv[0] == "-m":
        module = sys.argv.pop(1)
        sys.argv[0] = module
        sys.path.insert(0, os.getcwd())  # as `python -m` does
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python script` does
        runpy.run_path(sys.argv[0], run_name="__main__")
    raise SystemExit(0)  # the command ran to its end: exit 0, as its own interpreter would


def _answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve() -> None:
    loaded = [name for name in READ_AT_IMPORT if name in sys.modules]
    assert not loaded, f"{loaded} would keep the server's settings: import them per command"
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _command(request)  # its SystemExit (or exception) ends the child as it would `python`
        _answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer({"status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve()
