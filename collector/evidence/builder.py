"""Evidence built beside the daemon's ingest, never on it: a thread that claims requests, and a child
process per file that builds it under a memory and a time cap.

A year of a busy gate took 15 s and 1.75 GB to build; on the ingest loop that stalled every gate's acks
and outlived the partition's lease. So the daemon starts an ``EvidenceBuilder`` thread with a database
connection of its own. It claims one request at a time (the store's claim keeps one build per request
however many collector processes run) and hands it to ``python -m collector.evidence.builder``: a
separate interpreter, because only a process can be capped (``RLIMIT_AS`` on its address space, and
``RLIMIT_CPU``), cannot hold the daemon's GIL, and gives its memory back to the system when it exits. The
child builds, signs and records the file (or why not) under the claim; when it dies without doing so
(out of memory, killed after ``build_seconds``, any crash) the thread marks the request failed with the
reason. Stopping the daemon stops the child and gives its request back, pending, to the next process.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from collector.store import DatabaseError, Store, StoreError, Timeouts

log = logging.getLogger(__name__)

#: The exit status of a child that ran out of memory (and could not record it itself).
MEMORY_EXIT = 3
#: Seconds between looks for a waiting request while idle.
POLL_SECONDS = 1.0
#: Finished requests past their keeping are pruned this often (seconds).
PRUNE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class BuildLimits:
    """What one build may take: memory (bytes of address space), wall time (seconds; the child's CPU time
    is capped at the same), and the size of the file it keeps (bytes)."""

    memory_bytes: int = 1024 * 1024 * 1024
    seconds: float = 300.0
    document_bytes: int = 50 * 1024 * 1024


class EvidenceBuilder:
    """The daemon's evidence thread: claims waiting requests and builds each in a capped child process."""

    def __init__(self, db: str | Path, signing_key: Path, *, instance: str, limits: BuildLimits,
                 timeouts: Timeouts, child_timeouts: Timeouts | None = None):
        self.db, self.signing_key, self.instance, self.limits = db, signing_key, instance, limits
        self._timeouts = timeouts
        self._child_timeouts = child_timeouts or Timeouts()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evidence", daemon=True)
        self._child: subprocess.Popen | None = None
        self._pruned_at = -PRUNE_SECONDS

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the child (if building) and the thread; its request goes back to waiting."""
        self._stop.set()
        if self._thread.ident is None:
            return  # never started
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the evidence builder did not stop within %.0f s", timeout)

    def _run(self) -> None:
        store = None
        try:
            while not self._stop.is_set():
                try:
                    if store is None:
                        store = Store(self.db, upgrade=False, timeouts=self._timeouts)
                    self._round(store)
                except (DatabaseError, StoreError) as error:
                    log.error("evidence builder: %s; trying again shortly", error)
                    if store is not None:
                        store.close()
                        store = None
                    self._stop.wait(5 * POLL_SECONDS)
                    continue
                self._stop.wait(POLL_SECONDS)
        except Exception:  # noqa: BLE001 - evidence must never take the daemon down; ingest goes on
            log.exception("the evidence builder stopped; evidence requests wait until the collector restarts")
        finally:
            if store is not None:
                store.close()

    def _round(self, store: Store) -> None:
        """Prune once an hour; then build every waiting request, one at a time."""
        if time.monotonic() >= self._pruned_at + PRUNE_SECONDS:
            self._pruned_at = time.monotonic()
            pruned = store.prune_evidence_requests()
            if pruned:
                log.info("pruned %d finished evidence request(s)", pruned)
        while not self._stop.is_set() and store.has_pending_evidence():
            claim = f"{self.instance}:{secrets.token_hex(8)}"
            request = store.claim_evidence_request(claim)
            if request is None:
                return  # another process took it
            self._build(store, request, claim)

    def _build(self, store: Store, request: dict, claim: str) -> None:
        number = request["id"]
        job = {"db": str(self.db), "signing_key": str(self.signing_key), "request": request, "claim": claim,
               "memory_bytes": self.limits.memory_bytes, "seconds": self.limits.seconds,
               "document_bytes": self.limits.document_bytes, "verbosity": _verbosity(),
               "timeouts": [self._child_timeouts.statement, self._child_timeouts.lock,
                            self._child_timeouts.idle_in_transaction]}
        started = time.monotonic()
        # -P: nothing from the daemon's working directory shadows a module. The job (and the database URL
        # it may hold) goes through a pipe, not the command line that every user can read.
        try:
            child = subprocess.Popen([sys.executable, "-P", "-m", "collector.evidence.builder"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)
        except OSError as error:
            log.error("evidence request %d: cannot start a builder process: %s", number, error)
            store.finish_evidence_request(number, claim, reason="the file could not be built (no builder process "
                                          "could be started); the bank has the details in its log")
            return
        self._child = child
        log.info("evidence request %d for worker %s (%s..%s): building in process %d", number, request["worker"],
                 request["first_day"], request["last_day"], child.pid)
        try:
            child.stdin.write(json.dumps(job).encode())
            child.stdin.close()
        except OSError:
            pass  # the child died at once: its exit status says how
        reason = None
        while True:
            # Never past the time allowed: a build that ends within the last poll still overran it.
            remaining = self.limits.seconds - (time.monotonic() - started)
            try:
                status = child.wait(timeout=max(0.0, min(0.2, remaining)))
                break
            except subprocess.TimeoutExpired:
                pass
            if self._stop.is_set():
                _end(child)
                if store.release_evidence_request(number, claim):
                    log.info("evidence request %d given back unbuilt: the collector is stopping", number)
                self._child = None
                return
            if time.monotonic() - started > self.limits.seconds:
                _end(child)
                status = child.returncode
                reason = (f"the file took longer than the {self.limits.seconds:.0f} s the bank allows one "
                          "file to take: ask for a shorter period")
                break
        self._child = None
        if reason is None:
            reason = _why(status, self.limits)
            if reason is None:
                return  # the child recorded the file or the reason itself
        if store.finish_evidence_request(number, claim, reason=reason):
            log.warning("evidence request %d for worker %s failed: %s (builder exit status %s)", number,
                        request["worker"], reason, status)


def memory_reason(memory_bytes: int) -> str:
    return (f"the file needs more memory than the {memory_bytes / 1048576:.0f} MB the bank allows one file to "
            "take: ask for a shorter period")


def _verbosity() -> int:
    """The daemon's logging level as `collector -v` counts it, for the child's log lines."""
    level = logging.getLogger().getEffectiveLevel()
    return 2 if level <= logging.DEBUG else 0 if level <= logging.INFO else -1


def _end(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _why(status: int, limits: BuildLimits) -> str | None:
    """The reason a request failed from its child's exit status (None: it ended normally)."""
    if status == 0:
        return None
    if status == MEMORY_EXIT or status in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
        return memory_reason(limits.memory_bytes)
    if status == -signal.SIGXCPU:
        return (f"the file took longer than the {limits.seconds:.0f} s the bank allows one file to take: "
                "ask for a shorter period")
    return f"the file could not be built (the builder stopped with status {status}); the bank has the details in its log"


# ---------------------------------------------------------------------- the child


def _child_main() -> int:
    """Build one claimed request, under the caps the job names; the job arrives on standard input."""
    import resource

    from collector.evidence.signer import build_claimed
    from gate_agent.keys import load_private_key
    from gate_agent.logsetup import setup_logging

    job = json.loads(sys.stdin.buffer.read())
    setup_logging(job.get("verbosity", 0))
    cpu = max(1, int(job["seconds"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_AS, (job["memory_bytes"], job["memory_bytes"]))
    request, claim = job["request"], job["claim"]
    store = None
    try:
        key = load_private_key(Path(job["signing_key"]))
        store = Store(job["db"], upgrade=False, timeouts=Timeouts(*job["timeouts"]))
        build_claimed(store, key, request, claim, max_bytes=job["document_bytes"],
                      memory_reason=memory_reason(job["memory_bytes"]))
        return 0
    except MemoryError:
        # Out of memory before the build's own handler (loading, connecting): record it if there is room.
        try:
            if store is not None:
                store.finish_evidence_request(request["id"], claim, reason=memory_reason(job["memory_bytes"]))
                return 0
        except Exception:  # noqa: BLE001 - the parent records it from the exit status
            pass
        return MEMORY_EXIT
    finally:
        if store is not None:
            try:
                store.close()
            except Exception:  # noqa: BLE001
                pass


if __name__ == "__main__":
    sys.exit(_child_main())
