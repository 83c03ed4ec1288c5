"""`collector web link` and `collector web signout`: sign-in links for a site foreman's phone."""

from __future__ import annotations

import click

from collector.cli.common import Context, Group, check_id, emit, json_option, with_config


@click.group("web", cls=Group)
def web() -> None:
    """Sign-in links to the site page for a foreman's phone, and ending their sessions."""


@web.command("link")
@click.option("--site", "site_id", required=True, help="The site the link signs in to.")
@click.option("--minutes", type=click.FloatRange(1, 24 * 60), default=15, show_default=True,
              help="How long the link may wait to be opened (it works once).")
@click.option("--session-hours", type=click.FloatRange(0.1, 31 * 24), default=12, show_default=True,
              help="How long the browser stays signed in after opening it.")
@click.option("--url", "base_url", envvar="COLLECTOR_WEB_URL",
              help="The page's address as the foreman's phone reaches it (default: http://[web] host:port; "
                   "or $COLLECTOR_WEB_URL), e.g. https://attendance.example.")
@click.option("--note", help="Who the link is for (kept with it, e.g. the foreman's name).")
@click.option("--qr", "qr_file", type=click.Path(dir_okay=False),
              help="Also write the link as a QR code the foreman scans: FILE.png or FILE.svg, or FILE.html, a "
                   "printable card (a new file, 0600: it is the link).")
@json_option
@with_config
def link(ctx: Context, site_id: str, minutes: float, session_hours: float, base_url: str | None,
         note: str | None, qr_file: str | None, as_json: bool) -> None:
    """Make a single-use sign-in link for SITE's page and print it (hand it over in person or by a
    channel the foreman trusts). Only its digest is stored; opening it gives the browser a session cookie."""
    import os

    from collector import qr
    from collector.localtime import local_text_dt, zone
    from collector.signin import issue_link

    check_id("site", site_id)
    base = base_url or f"http://{ctx.config.web_host}:{ctx.config.web_port}"
    if not base.startswith(("http://", "https://")):
        raise click.ClickException(f"--url {base!r} must start with http:// or https://")
    if qr_file is not None:
        qr.kind_of(qr_file)  # refused before a link is made
        if os.path.lexists(qr_file):
            raise click.ClickException(f"{qr_file} already exists; choose another name (nothing is overwritten)")
    with ctx.store() as store:
        issued = issue_link(store, site_id, minutes=minutes, session_hours=session_hours, note=note)
        site = store.site(site_id)
    url = issued.url(base)
    expires = issued.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    written = None
    if qr_file is not None:
        until = local_text_dt(issued.expires_at, zone(site["timezone"]))
        written = qr.write(qr_file, url, title=f"{site.get('name') or site_id} 工地考勤页面", lines=[
            "工长用手机扫码登录，看谁在场、哪个门有问题。",
            f"只能用一次，{until[:16].replace('T', ' ')} 以前有效；登录后 {session_hours:g} 小时内不用再扫。",
            "不要转给别人：谁扫了谁就能看这个工地。"])
    emit(as_json, {"site": site_id, "url": url, "expires_at": expires, "session_hours": session_hours,
                   "qr": qr_file if written else None},
         f"{url}\nworks once, until {local_text_dt(issued.expires_at, zone(site['timezone']))[:16].replace('T', ' ')} "
         f"(the site's time, {expires}); the session then lasts {session_hours:g} h"
         + (f"\nQR code written to {qr_file} ({written}; 0600: whoever holds it holds the link)" if written else ""))


@web.command("signout")
@click.option("--site", "site_id", required=True, help="The site whose sessions end.")
@json_option
@with_config
def signout(ctx: Context, site_id: str, as_json: bool) -> None:
    """End every sign-in session of SITE and void its unused links (a lost or passed-on phone)."""
    from gate_agent.protocol import utc_now_text

    check_id("site", site_id)
    with ctx.store() as store:
        if store.site(site_id) is None:
            raise click.ClickException(f"there is no site {site_id}")
        ended = store.revoke_site_sessions(site_id, utc_now_text())
    emit(as_json, {"site": site_id, "sessions_ended": ended}, f"{ended} session(s) of site {site_id} ended")


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""
    main.add_command(web)
