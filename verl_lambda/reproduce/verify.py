r"""Math-Verify (Hugging Face's answer checker) on one extracted answer, safe inside verl's reward workers.

Math-Verify bounds each parse and each comparison with ``signal.alarm`` (``math_verify.utils.timeout``), which only
works in a process's main thread: from any other thread ``parse``/``verify`` raise ``ValueError("... doesn't
support threaded environment ...")``. verl's reward loop calls ``compute_score`` through
``loop.run_in_executor(None, ...)`` (``verl/experimental/reward_loop/reward_manager/naive.py``), i.e. from a
thread pool, so Math-Verify cannot run there directly. And an alarm cannot stop a computation that sits in C (a
huge integer power such as ``\boxed{10^{10^{10}}}`` makes sympy build a ten-billion-digit number).

:class:`MathVerifyPool` therefore runs Math-Verify in child processes (``python -m
verl_lambda.reproduce.verify``, plain subprocesses talking JSON lines), where each request runs in the child's main
thread with Math-Verify's own timeouts; the parent waits at most ``hard_timeout`` seconds, then kills that child
(the C-level case), counts the answer as not verified and starts a fresh child on the next request. Children are
created on demand, up to ``workers`` per process, and reused; a forked copy of the process gets its own. verl's own
``verl.utils.reward_score.math_verify`` also uses a process pool, but a stuck worker of a ``ProcessPoolExecutor``
cannot be killed, so enough pathological answers would silently turn every later score into a timeout.

Install: ``pip install "verl-lambda[reproduce]"`` (an exact Math-Verify pin; its antlr runtime is the 4.9 one that
verl's hydra already uses).

Layer 7 (applications).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = 'Math-Verify is not installed: pip install "verl-lambda[reproduce]" (or: pip install math-verify==0.9.0)'
# Math-Verify's own limits per parse and per comparison (its defaults), and ours for a whole request.
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5
HARD_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 300.0  # importing sympy on a node busy with a training step can be slow
_POOL_LOCK = threading.Lock()


def require_math_verify() -> None:
    """Raise ``ImportError`` with the install command when Math-Verify is missing."""
    if importlib.util.find_spec("math_verify") is None:
        raise ImportError(INSTALL_HINT)


def math_verify_equal(gold: str, pred: str) -> bool:
    r"""Math-Verify's verdict on the answer ``pred`` for the ground truth ``gold`` (both as found in ``\boxed{}``).

    Both are handed to Math-Verify in a box, the form its LaTeX extraction looks for first; the ground truth is
    parsed as LaTeX only, the answer as LaTeX or a plain expression (``1/2``), as verl's own Math-Verify scorer
    (``verl/utils/reward_score/math_verify.py``) does. Runs in the calling thread: only call it from a main thread
    (:class:`MathVerifyPool` does).
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_parsed = parse(
        "\\boxed{" + gold + "}", extraction_config=[LatexExtractionConfig()], parsing_timeout=PARSE_TIMEOUT_S
    )
    pred_parsed = parse(
        "\\boxed{" + pred + "}",
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=PARSE_TIMEOUT_S,
    )
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=VERIFY_TIMEOUT_S))


def serve(stdin: Any = None, stdout: Any = None) -> None:
    """A child's loop (``python -m verl_lambda.reproduce.verify``): one JSON request per line in, one answer out.

    Request ``{"gold": str, "pred": str}``; answer ``{"ok": true, "equal": bool}`` or ``{"ok": false, "error": str}``.
    """
    import math_verify  # noqa: F401  (imported once, before the first request)

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its per-timeout warnings would flood verl's log
    stdout.write(json.dumps({"ready": True}) + "\n")  # start-up (imports) must not count against a request's limit
    stdout.flush()
    for line in stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, "equal": math_verify_equal(request["gold"], request["pred"])}
        except Exception as exc:  # a Math-Verify bug is a miss for this answer, not the end of the child
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


@dataclass
class _Child:
    """One ``serve`` process. A plain subprocess, not ``multiprocessing``: spawn would re-import the parent's
    ``__main__`` (a Ray worker's, a user's script), and fork would copy the reward worker's threads."""

    process: subprocess.Popen

    @classmethod
    def start(cls) -> _Child:
        """A new child, once it has imported Math-Verify and said so."""
        command = [sys.executable, "-m", "verl_lambda.reproduce.verify"]
        child = cls(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))
        try:
            if not child._read(STARTUP_TIMEOUT_S).get("ready"):
                raise EOFError("no ready line")
        except (TimeoutError, EOFError, ValueError) as exc:
            child.kill()
            raise RuntimeError(f"Math-Verify's process did not start ({exc!r}); is math-verify installed?") from exc
        return child

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self.process.stdout.readline()
        if not line:
            raise EOFError(f"exit code {self.process.poll()}")
        return json.loads(line)

    def ask(self, gold: str, pred: str, timeout: float) -> dict[str, Any]:
        """The child's answer; ``TimeoutError`` after ``timeout`` s, ``EOFError`` when it died."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"gold": gold, "pred": pred}) + "\n")
        self.process.stdin.flush()
        return self._read(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@dataclass
class MathVerifyPool:
    """Child processes that run :func:`math_verify_equal`; see the module docstring."""

    workers: int = 2
    hard_timeout: float = HARD_TIMEOUT_S
    timeouts: int = 0  # requests that overran hard_timeout (their child was killed)
    errors: int = 0  # requests on which Math-Verify raised or its child died
    _idle: list[_Child] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.BoundedSemaphore = field(init=False)
    _pid: int = field(init=False)

    def __post_init__(self) -> None:
        self._slots, self._pid = threading.BoundedSemaphore(self.workers), os.getpid()

    def _reset_after_fork(self) -> None:
        """A forked copy of this process must not share the parent's children (their pipes are the parent's)."""
        if self._pid != os.getpid():
            with _POOL_LOCK:
                if self._pid != os.getpid():
                    self._idle, self._lock = [], threading.Lock()
                    self._slots = threading.BoundedSemaphore(self.workers)
                    self._pid = os.getpid()

    def equal(self, gold: str, pred: str) -> bool:
        """Math-Verify's verdict, from a child process; False when it errs or overruns ``hard_timeout``."""
        self._reset_after_fork()
        with self._slots:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None or child.process.poll() is not None:
                child = _Child.start()
            try:
                answer = child.ask(gold, pred, self.hard_timeout)
            except TimeoutError:
                self.timeouts += 1
                logger.warning("Math-Verify overran %.0fs on answer %.200r; counted as wrong", self.hard_timeout, pred)
                child.kill()
                return False
            except (EOFError, OSError, ValueError) as exc:  # the child died (out of memory, killed) or garbled
                self.errors += 1
                logger.warning("Math-Verify's process failed on answer %.200r (%s); counted as wrong", pred, exc)
                child.kill()
                return False
            with self._lock:
                self._idle.append(child)
            if not answer["ok"]:
                self.errors += 1
                logger.warning("Math-Verify failed on answer %.200r: %s; counted as wrong", pred, answer["error"])
                return False
            return bool(answer["equal"])

    def close(self) -> None:
        """Stop the idle children (a busy one stops when its request is answered and its stdin closes)."""
        with self._lock:
            children, self._idle = self._idle, []
        for child in children:
            child.kill()


_POOL: MathVerifyPool | None = None


def shared_pool() -> MathVerifyPool:
    """This process's pool (created on first use; ``VERL_LAMBDA_MATH_VERIFY_WORKERS`` children, default 2)."""
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                require_math_verify()
                _POOL = MathVerifyPool(workers=max(1, int(os.environ.get("VERL_LAMBDA_MATH_VERIFY_WORKERS", "2"))))
    return _POOL


if __name__ == "__main__":
    serve()
