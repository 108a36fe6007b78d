"""``newsbot deliveries``: the deliveries in doubt (their request may or may not have reached
Telegram, so the bot never resends them by itself), and sending them again deliberately."""

from __future__ import annotations

import argparse

from bot.app import Core
from bot.cli.common import EXIT_OK, _, ngettext, say, with_core
from storage.deliveries import InDoubt, list_in_doubt, resend_in_doubt
from storage.models import utcnow

HEADLINE_CHARS = 60


@with_core
async def doubt(core: Core, args: argparse.Namespace) -> int:
    """List the deliveries in doubt, one a line: alert, chat, when, headline, error."""
    async with core.db.sessions() as session:
        rows = await list_in_doubt(session, args.alert)
    if not rows:
        print(_nothing_in_doubt(args.alert))
        return EXIT_OK
    zone = core.settings.zone
    print("\t".join((_("alert"), _("chat"), _("when"), _("headline"), _("error"))))
    for row in rows:
        when = row.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        print(
            "\t".join(
                (str(row.alert_id), _chat(row), when, _shortened(row.headline), row.error or "")
            )
        )
    say(
        ngettext(
            "{count} delivery in doubt: the reader may or may not have it. "
            "`newsbot deliveries resend --alert ID` (or `--all`) sends it again",
            "{count} deliveries in doubt: their readers may or may not have them. "
            "`newsbot deliveries resend --alert ID` (or `--all`) sends them again",
            len(rows),
        ).format(count=len(rows))
    )
    return EXIT_OK


@with_core
async def resend(core: Core, args: argparse.Namespace) -> int:
    """Put the deliveries in doubt (one alert's, or all) back in the queue."""
    now = utcnow()
    stale_age = core.settings.stale_age
    async with core.db.transaction() as session:
        resent = await resend_in_doubt(
            session, now, created_since=now - stale_age, alert_id=args.alert
        )
    if not (resent.queued or resent.stale or resent.inactive):
        print(_nothing_in_doubt(args.alert))
        return EXIT_OK
    print(
        ngettext(
            "put {count} delivery back in the queue: a running bot sends it within seconds",
            "put {count} deliveries back in the queue: a running bot sends them within seconds",
            resent.queued,
        ).format(count=resent.queued)
    )
    if resent.stale:
        hours = round(stale_age.total_seconds() / 3600, 2)
        print(
            ngettext(
                "{count} left in doubt: its alert is older than NEWSBOT_STALE_HOURS ({hours} h)",
                "{count} left in doubt: their alert is older than NEWSBOT_STALE_HOURS ({hours} h)",
                resent.stale,
            ).format(count=resent.stale, hours=f"{hours:g}")
        )
    if resent.inactive:
        print(
            ngettext(
                "{count} left in doubt: its chat no longer receives alerts",
                "{count} left in doubt: their chats no longer receive alerts",
                resent.inactive,
            ).format(count=resent.inactive)
        )
    return EXIT_OK


def _nothing_in_doubt(alert_id: int | None) -> str:
    if alert_id is None:
        return _("no deliveries in doubt")
    return _("no deliveries in doubt for alert {id}").format(id=alert_id)


def _chat(row: InDoubt) -> str:
    return f"{row.chat_id} ({row.chat_title})" if row.chat_title else str(row.chat_id)


def _shortened(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= HEADLINE_CHARS else line[: HEADLINE_CHARS - 1] + "…"
