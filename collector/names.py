"""Names no gate may take: the collector's own, and its MQTT client ids.

A rule of the registry (``gate add`` refuses them) and of the PKI (``gate enroll``, the broker's ACLs),
kept in a module that imports nothing, so the store can apply it without importing what sits above it.
"""

from __future__ import annotations

import re

#: The collector's certificate name: its MQTT username at the broker. No gate may be enrolled under it.
COLLECTOR_NAME = "collector"
#: Certificate names that are not gates' whatever the hosts: the collector's, and the broker server's
#: default ("localhost"; `ca init --host` names it otherwise, see broker_config.reserved_names).
RESERVED_NAMES = frozenset({COLLECTOR_NAME, "localhost"})
#: The collector's MQTT client ids: its name, and with its work split into partitions, one session per
#: partition named NAME-pNN (collector-p01...).
_COLLECTOR_SESSION = re.compile(re.escape(COLLECTOR_NAME) + r"(-p[0-9]+)?")


def is_reserved_name(name: str) -> bool:
    """A name no gate may have whatever the PKI: a fixed one, or a client id of the collector's sessions.
    The broker keeps one session per client id across all its listeners and a gate's client id is its
    name, so a gate called collector-p03 would take over that partition's session and what is queued in it."""
    return name in RESERVED_NAMES or _COLLECTOR_SESSION.fullmatch(name) is not None
