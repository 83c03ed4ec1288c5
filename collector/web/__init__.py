"""The bank's web side: the ASGI app, sign-in, the worker's page, /metrics, static files."""
