"""Ingest: verifying and storing punches exactly once, the daemon, leases among collectors."""
