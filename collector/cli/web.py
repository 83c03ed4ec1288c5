"""`collector serve`: the read-only dashboard, JSON API and metrics."""

from __future__ import annotations

import logging

import click

from collector.cli.common import Context, with_config

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--host", help="Address to listen on (default: [web] host, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [web] port, else 8080).")
@with_config
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """Serve the site dashboard (/sites/SITE), the JSON API (/api/...) and /metrics until SIGTERM.

    A separate process from `collector run`: it opens the database read-only, so a slow page never
    stalls ingest. Access needs a bearer token from [web.tokens] in the configuration.
    """
    from gate_agent.extras import require

    # The bank extra's: a gate's install has neither, and says so in one line rather than a traceback.
    require("starlette", "bank")
    require("jinja2", "bank")
    uvicorn = require("uvicorn", "bank")

    from collector.store import display
    from collector.web import stores
    from collector.web.app import WebApp

    config = ctx.config
    if not config.web_tokens:
        raise click.ClickException(f"{config.source}: no [web.tokens]: nobody could read anything; add a "
                                   'token, e.g. "<random string of 16+ characters>" = "S1" (or "*" for all sites)')
    host = host or config.web_host
    port = port or config.web_port
    log.info("serving %s read-only on http://%s:%d (%d token(s))", display(config.db), host, port, len(config.web_tokens))
    web = WebApp(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            web.stop()  # live streams end within a poll interval instead of holding the shutdown
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(
        web.app, host=host, port=port,
        log_config=None,  # our logging setup: same format as the other commands, journald priorities
        access_log=True,  # method, path and status only: tokens travel in headers, never in URLs
        proxy_headers=False, server_header=False,
        # A stream still open this long after SIGTERM is cut.
        timeout_graceful_shutdown=5,
    ))
    try:
        server.run()
    finally:
        stores.close_all()  # the database sessions kept for the next request


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""
    main.add_command(serve)
