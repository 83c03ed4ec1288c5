"""One-shot commands of both tools run inside the test process, through click's CliRunner.

Starting a Python process per command costs most of a second of imports; a test suite runs hundreds of
commands. What a test sees is what a process would have given it (a CompletedProcess: exit status,
stdout, stderr), and what a command changes in the process is put back afterwards: the root logger
(each command sets up logging to the stderr it is given), logger levels, signal handlers, the
environment, the working directory and the umask.

A command that hangs fails its test after ``timeout`` seconds with the traceback of where it hung
(SIGALRM, which interrupts a blocking call as well). An exception that escapes the tool's own handling
(ToolGroup turns every command's failure into a line and an exit status) ends with exit status 1 and
its traceback on stderr, as Python's would.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import traceback
from contextlib import contextmanager

from click.testing import CliRunner

#: Signals a command may take over (the daemons do, for a clean stop); restored after every command.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)


class CommandTimedOut(BaseException):
    """Raised in the command's frame when its time is up: a BaseException, so that neither the tool's
    failure handling nor click's takes it for the command's own error."""


def _main(tool: str):
    if tool == "collector":
        from collector.cli.root import main
    elif tool == "gate-agent":
        from gate_agent.cli import main
    else:
        raise ValueError(f"not one of the tools: {tool}")
    return main


def run_in_process(tool: str, args: list[str], *, timeout: float, input: str | bytes | None = None,
                   env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None, umask: int = -1,
                   text: bool = True) -> subprocess.CompletedProcess:
    """``tool *args`` as a process would run it, in this one. As for subprocess.run: ``env`` is the whole
    environment, ``umask`` -1 leaves it as it is, ``text`` output is decoded with line endings made
    ``\\n`` (else it is bytes, exactly); ``input`` is what stdin holds (empty if None, never a terminal)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("in-process commands run on the main thread (signals, and sys.stdout is global)")
    main = _main(tool)
    environment = dict(os.environ if env is None else env)
    changes = {name: None for name in os.environ if name not in environment} | environment
    # Help text wraps as in a process whose stdout is a pipe: at $COLUMNS, else 80 columns (CliRunner's
    # own choice would be 80 for the text, where click takes 2 off the terminal's width).
    columns = int(environment["COLUMNS"]) if environment.get("COLUMNS", "").isdigit() else 80
    width = max(min(columns or 80, 80) - 2, 50)
    with _state_restored(), _deadline(timeout, tool, args):
        if cwd is not None:
            os.chdir(cwd)
        if umask >= 0:
            os.umask(umask)
        result = CliRunner().invoke(main, list(args), input=input, env=changes, prog_name=tool,
                                    terminal_width=width)
    stdout, stderr = result.stdout_bytes, result.stderr_bytes
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info)).encode()
    if text:
        stdout, stderr = _text(stdout), _text(stderr)
    return subprocess.CompletedProcess([tool, *args], result.exit_code, stdout, stderr)


def _text(output: bytes) -> str:
    """Output read as subprocess.run(text=True) reads it (universal newlines)."""
    return output.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


@contextmanager
def _deadline(timeout: float, tool: str, args: list[str]):
    running = True

    def expire(signum, frame):
        if running:
            raise CommandTimedOut()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    except CommandTimedOut as timed_out:
        where = "".join(traceback.format_tb(timed_out.__traceback__))
        raise AssertionError(f"{tool} {' '.join(map(str, args))} did not finish within {timeout} s; "
                             f"it was here:\n{where}") from None
    finally:
        running = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _state_restored():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)}
    handlers_of = {signum: signal.getsignal(signum) for signum in SIGNALS}
    environment = dict(os.environ)
    cwd = os.getcwd()
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if isinstance(logger, logging.Logger) and logger.level != loggers.get(name, logging.NOTSET):
                logger.setLevel(loggers.get(name, logging.NOTSET))
        for signum, handler in handlers_of.items():
            signal.signal(signum, handler)
        if os.environ != environment:
            os.environ.clear()
            os.environ.update(environment)
        os.chdir(cwd)
        os.umask(umask)
