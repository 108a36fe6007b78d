"""An editor's update of a story through the running bot: ``/alert #story:ID TEXT`` is
previewed as readers will see it, and once confirmed reaches the chats the story reached,
as a reply to their alert, with a sound (the editor's choice); a story that reached nobody
is refused."""

from __future__ import annotations

from sqlalchemy import select

from bot.delivery.fanout import Fanout
from bot.text.topics import ResolvedTopic, resolve
from storage.chats import upsert_chat
from storage.db import Database
from storage.models import Alert, Article, Story, utcnow
from tests.botharness import EDITOR, RunningBot

RUSSIA_FOLLOWERS = (701, 702)
EGYPT_FOLLOWER = 703


def topic(phrase: str) -> ResolvedTopic:
    """A catalog topic as a reader would follow it."""
    resolved = resolve(phrase)
    assert isinstance(resolved, ResolvedTopic)
    return resolved


async def pushed_story(newsbot: RunningBot) -> int:
    """Readers follow Russia or Egypt; a breaking article about Russia, in a story, is
    pushed to Russia's followers; the story's id."""
    services = newsbot.services
    async with services.db.transaction() as session:
        for chat_id, phrase in [(c, "روسيا") for c in RUSSIA_FOLLOWERS] + [
            (EGYPT_FOLLOWER, "مصر")
        ]:
            await upsert_chat(session, chat_id, kind="private", language="ar")
            await services.topics.follow(session, chat_id, topic(phrase))
        story = Story(first_seen_at=utcnow(), last_seen_at=utcnow())
        session.add(story)
        await session.flush()
        article = Article(
            uid="kremlin-1",
            title="عاجل: روسيا تعلن هدنة في كورسك",
            published_at=utcnow(),
            alertable=True,
            breaking=True,
            story_id=story.id,
        )
        session.add(article)
        await session.flush()
        await Fanout(services.topics).alert_articles(session, [article.id], utcnow())
        story_id = story.id
    services.wake_sender()
    for chat_id in RUSSIA_FOLLOWERS:
        await newsbot.fake.wait_for_messages(chat_id, 1)
    return story_id


async def test_an_editor_update_of_a_story_replies_loudly_to_its_readers(
    db: Database, newsbot: RunningBot
) -> None:
    """The preview names the story and counts the chats it reached; «Send» makes a
    development of it, delivered to those chats only, as a reply to their alert, with a
    sound."""
    story_id = await pushed_story(newsbot)
    (shown,) = await newsbot.say(
        EDITOR, f"/alert #story:{story_id} الكرملين: الهدنة تبدأ منتصف الليل", language_code="en"
    )
    assert shown.plain.startswith("UPDATE | الكرملين: الهدنة تبدأ منتصف الليل")
    assert f"Send this update of story {story_id} to the 2 chats it reached?" in shown.plain
    await newsbot.press(EDITOR, shown, shown.callback_data[0], user_id=EDITOR)
    for chat_id in RUSSIA_FOLLOWERS:
        alert, update = await newsbot.fake.wait_for_messages(chat_id, 2)
        assert update.reply_to_message_id == alert.message_id
        assert update.plain.startswith("تحديث") and not update.disable_notification
    assert newsbot.fake.messages_to(EGYPT_FOLLOWER) == []
    async with newsbot.services.db.sessions() as session:
        kinds = (await session.execute(select(Alert.story_id, Alert.kind))).all()
    assert sorted(tuple(row) for row in kinds) == [(story_id, "alert"), (story_id, "development")]


async def test_an_update_of_a_story_nobody_got_is_refused(
    db: Database, newsbot: RunningBot
) -> None:
    """A story that reached no chat gets no preview, and nothing is stored."""
    (refused,) = await newsbot.say(EDITOR, "/alert #story:999 خبر", language_code="en")
    assert "Story 999 reached nobody" in refused.plain and refused.reply_markup is None
