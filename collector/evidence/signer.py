"""Signing the evidence workers ask for on their page, for the collector daemon (which holds the bank's key).

`collector serve` holds no signing key (docs/security.md): it records a request (the worker and the
period, both checked against the worker's link and the bank's limits) and shows its state. A collector
process claims one request at a time (``Store.claim_evidence_request``) and builds it in a child process
of its own (collector.evidence.builder), which makes the file with ``build_evidence`` from the database
alone, signs it and stores the bytes the page will serve; a request that cannot be built is marked
failed with the reason, shown to the worker.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import date

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.attendance.reports import check_period
from collector.evidence.document import build_evidence
from collector.store import DatabaseError, Store, StoreError

log = logging.getLogger(__name__)

#: Why a request failed whose build ran out of the memory the bank allows one build.
MEMORY_REASON = "the file needs more memory than the bank allows one file to take: ask for a shorter period"


def document_bytes(document: dict) -> str:
    """The file as served: ASCII JSON, the same text whoever downloads it."""
    return json.dumps(document, ensure_ascii=True, indent=1)


def sign_next(store: Store, key: Ed25519PrivateKey, claimant: str, *, max_bytes: int | None = None) -> dict | None:
    """Claim the oldest waiting request, build and sign it in this process; returns the request as
    finished (``state`` done or failed), or None when there was nothing to claim. (The daemon builds in a
    child process instead: collector.evidence.builder.)"""
    claim = f"{claimant}:{secrets.token_hex(8)}"
    request = store.claim_evidence_request(claim)
    if request is None:
        return None
    return build_claimed(store, key, request, claim, max_bytes=max_bytes)


def build_claimed(store: Store, key: Ed25519PrivateKey, request: dict, claim: str, *,
                  max_bytes: int | None = None, memory_reason: str = MEMORY_REASON) -> dict | None:
    """Build and sign a request claimed under ``claim``, and record the file or why it could not be made
    (larger than ``max_bytes``, out of memory...). None if the claim went stale and was taken over. A
    database failure while building leaves the claim to go stale (another round, or process, takes it)."""
    number, worker = request["id"], request["worker"]
    started = time.monotonic()
    document = reason = None
    try:
        first, last = check_period(date.fromisoformat(request["first_day"]), date.fromisoformat(request["last_day"]))
        document = document_bytes(build_evidence(store, worker, first, last, key=key))
    except DatabaseError:
        raise
    except MemoryError:
        document = None
        reason = memory_reason
    except (StoreError, ValueError) as error:
        reason = str(error)
    except Exception as error:  # noqa: BLE001 - a request must not stop the daemon; its reason is kept
        log.exception("evidence request %d for worker %s could not be built", number, worker)
        reason = f"the file could not be built ({type(error).__name__}); the bank has the details in its log"
    if document is not None and max_bytes is not None and len(document) > max_bytes:
        reason = (f"the file would be {len(document) / 1048576:.1f} MB, more than the bank keeps for one worker "
                  f"({max_bytes / 1048576:.1f} MB): ask for a shorter period")
        document = None
    if not store.finish_evidence_request(number, claim, document=document, reason=reason):
        log.warning("evidence request %d: the claim went stale and was taken over; this result is dropped", number)
        return None
    if reason is None:
        log.info("evidence request %d for worker %s (%s..%s) signed in %.2f s", number, worker,
                 request["first_day"], request["last_day"], time.monotonic() - started)
    else:
        log.warning("evidence request %d for worker %s failed: %s", number, worker, reason)
    return store.evidence_request(number)
