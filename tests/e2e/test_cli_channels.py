"""`newsbot channels add|list|remove` against a fake Bot API: the channel is looked up, the
bot must be an administrator that may post, and the channel then takes every breaking story
or only its topics."""

from __future__ import annotations

from pathlib import Path

from storage.chats import get_chat
from storage.db import Database
from storage.models import utcnow
from storage.subscriptions import list_chat_topics, list_followers
from tests.fakebotapi import FakeBotAPI
from tests.processes import newsbot, one_line_error

CHANNEL = -1001234567890
NAME = "newsroom_alerts"


def env_for(db: Database, fake: FakeBotAPI) -> dict[str, str]:
    """The variables an operator sets: the database, the token and the Bot API."""
    return {
        "NEWSBOT_DATABASE_URL": db.url.render_as_string(False),
        "NEWSBOT_TOKEN": fake.token,
        "NEWSBOT_API_URL": fake.base_url,
    }


def a_channel(fake: FakeBotAPI, *, bot_is_admin: bool = True) -> None:
    """The newsroom's channel, with the bot as an administrator (or a mere member)."""
    fake.add_chat(CHANNEL, chat_type="channel", title="عاجل الوكالة", username=NAME)
    fake.set_admins(CHANNEL, [], bot_is_admin=bot_is_admin)


async def test_a_channel_is_added_listed_and_removed(
    db: Database, fake_api: FakeBotAPI, tmp_path: Path
) -> None:
    """Added without topics a channel takes every breaking story; added with --topic it
    follows those instead; list shows it; remove stops it."""
    env = env_for(db, fake_api)
    a_channel(fake_api)
    added = await newsbot("channels", "add", f"@{NAME}", env=env, cwd=tmp_path)
    assert added.code == 0, added.err
    assert f"channel عاجل الوكالة ({CHANNEL}) now receives every breaking story" in added.out
    async with db.sessions() as session:
        chat = await get_chat(session, CHANNEL)
        assert chat is not None and chat.kind == "channel" and chat.all_breaking
        assert CHANNEL in await list_followers(session, [], utcnow(), all_breaking=True)
    listed = await newsbot("channels", "list", env=env, cwd=tmp_path)
    assert listed.out.strip() == f"{CHANNEL}\tعاجل الوكالة\tevery breaking story"

    topics = await newsbot(
        "channels",
        "add",
        str(CHANNEL),
        "--topic",
        "روسيا",
        "--topic",
        "كوريا الشمالية",
        env=env,
        cwd=tmp_path,
    )
    assert topics.code == 0, topics.err
    assert "now follows: روسيا, كوريا الشمالية" in topics.out
    assert "after it restarts" not in topics.out  # a running bot reads followed topics itself
    async with db.sessions() as session:
        chat = await get_chat(session, CHANNEL)
        assert chat is not None and not chat.all_breaking
        keys = [topic.key for topic in await list_chat_topics(session, CHANNEL)]
    assert keys == ["russia", "north_korea"]
    listed = await newsbot("channels", "list", env=env, cwd=tmp_path)
    assert listed.out.strip().endswith("روسيا, كوريا الشمالية")

    removed = await newsbot("channels", "remove", f"@{NAME}", env=env, cwd=tmp_path)
    assert removed.code == 0, removed.err
    assert "removed channel عاجل الوكالة" in removed.out
    async with db.sessions() as session:
        chat = await get_chat(session, CHANNEL)
        assert chat is not None and not chat.active
        assert await list_chat_topics(session, CHANNEL) == []
    listed = await newsbot("channels", "list", env=env, cwd=tmp_path)
    assert "no channels yet" in listed.out
    again = await newsbot("channels", "remove", str(CHANNEL), env=env, cwd=tmp_path)
    assert "no channel" in one_line_error(again)


async def test_a_bot_that_is_not_an_administrator_is_refused(
    db: Database, fake_api: FakeBotAPI, tmp_path: Path
) -> None:
    """A channel where the bot cannot post is refused in one line and nothing is stored."""
    a_channel(fake_api, bot_is_admin=False)
    result = await newsbot("channels", "add", f"@{NAME}", env=env_for(db, fake_api), cwd=tmp_path)
    assert "not an administrator" in one_line_error(result)
    async with db.sessions() as session:
        assert await get_chat(session, CHANNEL) is None


async def test_mistakes_get_one_line(db: Database, fake_api: FakeBotAPI, tmp_path: Path) -> None:
    """No token, an unknown channel, a group, a refused topic and a rejected token each end
    in one line naming the problem."""
    env = env_for(db, fake_api)
    a_channel(fake_api)
    no_token = {key: value for key, value in env.items() if key != "NEWSBOT_TOKEN"}
    cases = [
        (("channels", "add", f"@{NAME}"), no_token, "no bot token"),
        (("channels", "add", "@no_such_channel"), env, "unknown channel @no_such_channel"),
        (("channels", "add", "-100777"), env, "is not a channel"),
        (("channels", "add", f"@{NAME}", "--topic", "في"), env, "cannot follow 'في'"),
        (
            ("channels", "add", f"@{NAME}"),
            env | {"NEWSBOT_TOKEN": "999:wrong"},
            "rejected the token",
        ),
    ]
    for args, variables, expected in cases:
        line = one_line_error(await newsbot(*args, env=variables, cwd=tmp_path))
        assert expected in line, (args, line)
        assert "wrong" not in line  # the token never shows
    async with db.sessions() as session:
        assert await get_chat(session, CHANNEL) is None
