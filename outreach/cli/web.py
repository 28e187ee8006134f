"""`outreach web`: the web endpoints served alone, for a deployment that runs them apart from the daemon."""

from __future__ import annotations

import sys

import click

from outreach.cli import options


@click.command("web")
@click.option("--listen", metavar="HOST:PORT", help="Where to listen (default: Settings web.listen, 127.0.0.1:8025).")
@options.rules_option
@options.db_option
def web(listen: str | None, rules_dir: str, db_url: str | None) -> None:
    """Serve the web endpoints alone: unsubscribe pages and one-click POSTs, the open pixel, click redirects, the
    ingest API, /healthz and /metrics (docs/web.md).

    `outreach run` serves them too, beside its loops; run this instead where the
    endpoints sit on another machine than the daemon, on the same database.
    Links are verified with the secret Settings.tracking names (or the one the
    daemon created in its state directory: give this process the same).
    SIGHUP reloads the rules; SIGTERM stops it.

    \b
    Examples:
      outreach web
      outreach web --listen 0.0.0.0:8025 --db postgresql://outreach@db/outreach
    """
    options.load_rules(rules_dir)  # errors as every command shows them, before anything starts
    import asyncio

    from outreach import daemon  # logging as the daemon's
    from outreach.web import service  # imported when it runs: the CLI starts fast

    daemon.configure_logging()
    try:
        code = asyncio.run(service.serve_alone(rules_dir, db_url, listen=listen))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        click.echo(f"outreach: cannot listen: {exc.strerror or exc}", err=True)
        code = 1
    sys.exit(code)
