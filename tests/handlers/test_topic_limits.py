"""Topics do not grow without end, through the running bot: a chat creates only so many new
free phrases a day, and a topic nobody follows leaves the matcher at once and storage
once its day is over.

Every test uses chats of its own: on PostgreSQL the database is shared by the whole run.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.delivery.fanout import NEW_PHRASES_PER_DAY
from storage.db import Database
from storage.models import Topic
from tests.botharness import RunningBot

EN = {"language_code": "en"}


async def stored_keys(newsbot: RunningBot) -> set[str]:
    """The keys of every stored topic."""
    async with newsbot.services.db.sessions() as session:
        return set((await session.scalars(select(Topic.key))).all())


def phrases(first: int, count: int) -> str:
    """Free phrases nobody else follows, separated by commas: «مادة 1، مادة 2…»."""
    return "، ".join(f"مادة رقم {number}" for number in range(first, first + count))


async def test_a_chat_is_told_when_it_created_its_days_worth_of_topics(
    db: Database, newsbot: RunningBot
) -> None:
    """Past the day's new free phrases /follow answers why and stores nothing more;
    unfollowing gives nothing back; a catalog topic still follows."""
    chat = 3301
    for first in range(0, NEW_PHRASES_PER_DAY, 10):
        await newsbot.say(chat, f"/follow {phrases(first, 10)}", **EN)
    assert len(await stored_keys(newsbot)) == NEW_PHRASES_PER_DAY
    await newsbot.say(chat, f"/unfollow {phrases(0, 10)}", **EN)

    (refused,) = await newsbot.say(chat, f"/follow {phrases(100, 1)}، روسيا", **EN)
    lines = refused.plain.splitlines()
    assert f"created {NEW_PHRASES_PER_DAY} new topics today" in lines[0]
    assert "Following Russia" in lines[1]
    assert len(await stored_keys(newsbot)) == NEW_PHRASES_PER_DAY + 1  # Russia


async def test_an_unfollowed_topic_leaves_the_matcher_and_then_storage(
    db: Database, newsbot: RunningBot
) -> None:
    """The last follower's /unfollow takes a topic out of the matcher at once; storage
    keeps it until its day is over, then deletes it; a followed topic stays."""
    services = newsbot.services
    await newsbot.say(3302, "/follow زيت الزيتون، الطاقة الشمسية", **EN)
    await newsbot.say(3303, "/follow الطاقة الشمسية", **EN)
    assert len(services.topics) == 2
    await newsbot.say(3302, "/unfollow زيت الزيتون", **EN)
    assert len(services.topics) == 1
    assert not services.topics.match_ids("ارتفاع أسعار زيت الزيتون", "")
    assert "phrase:زيت زيتون" in await stored_keys(newsbot)

    later = services.clock() + timedelta(days=2)
    services.clock = lambda: later
    (reply,) = await newsbot.say(3302, "/unfollow الطاقة الشمسية", **EN)
    assert "no longer follow" in reply.plain
    assert await stored_keys(newsbot) == {"phrase:طاقه شمسيه"}  # 3303 still follows it
    assert services.topics.match_ids("افتتاح محطة للطاقة الشمسية", "")
