"""The reader's side of the bot, driven through the real Application against the fake Bot API:
/start and deep links, following and unfollowing by name and by button, settings, /stop,
groups and their admins, the bot's membership, guidance and the command menus.

Every test uses chats of its own: on PostgreSQL the database is shared by the whole run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select

from bot.text.topics import load_catalog
from handlers.start import POPULAR
from storage.models import Topic, utcnow
from tests.botharness import EDITOR, RunningBot
from tests.fakebotapi import SentMessage

EN = {"language_code": "en"}


def pick(key: str) -> str:
    """The callback data of the button that follows a catalog topic."""
    catalog = load_catalog()
    topic = catalog.get(key)
    assert topic is not None
    return f"pick:{catalog.topics.index(topic)}"


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` is true, up to 5 s (for updates that get no reply: the
    database is polled, as nothing signals that the update was handled)."""
    for _attempt in range(250):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not become true within 5 s")


def current(newsbot: RunningBot, message: SentMessage) -> dict[str, object]:
    """The message as it stands after edits."""
    return newsbot.fake.message(message.chat_id, message.message_id)


def buttons(markup: object) -> list[tuple[str, str]]:
    """(text, callback_data) of every inline button of a message's markup."""
    assert isinstance(markup, dict)
    return [
        (button["text"], button["callback_data"])
        for row in markup["inline_keyboard"]
        for button in row
    ]


# -- /start -------------------------------------------------------------------------------------


async def test_start_welcomes_with_popular_topics_and_registers_the_chat(
    newsbot: RunningBot,
) -> None:
    """/start registers the chat in the reader's language and offers popular topics as buttons."""
    (reply,) = await newsbot.say(3101, "/start", **EN)
    assert "Welcome to Newsbot" in reply.plain
    assert "/follow" in reply.plain
    assert reply.callback_data == [*(pick(key) for key in POPULAR), "browse:new"]
    assert ("Russia", pick("russia")) in buttons(reply.reply_markup)
    chat = await newsbot.stored_chat(3101)
    assert chat is not None
    assert (chat.active, chat.language, chat.kind) == (True, "en", "private")
    (arabic,) = await newsbot.say(3102, "/start")
    assert ("روسيا", pick("russia")) in buttons(arabic.reply_markup)
    assert (await newsbot.stored_chat(3102)) is not None


async def test_a_welcome_button_follows_and_is_marked(newsbot: RunningBot) -> None:
    """Tapping a topic under the welcome follows it and marks the button ✓ in place."""
    (reply,) = await newsbot.say(3103, "/start", **EN)
    await newsbot.press(3103, reply, pick("gaza"))
    assert await newsbot.followed(3103) == ["gaza"]
    assert newsbot.fake.callback_answers[-1].text == "✓ Following Gaza"
    assert ("✓ Gaza", pick("gaza")) in buttons(current(newsbot, reply).get("reply_markup"))
    assert newsbot.fake.edits[-1].method == "editMessageReplyMarkup"


async def test_deep_links_follow_catalog_topics_at_once(newsbot: RunningBot) -> None:
    """/start russia (t.me/BOT?start=russia) follows Russia and says so; "-" joins several."""
    (reply,) = await newsbot.say(3104, "/start russia", **EN)
    assert "✓ Following Russia" in reply.plain
    assert ("✓ Russia", pick("russia")) in buttons(reply.reply_markup)
    assert await newsbot.followed(3104) == ["russia"]
    (both,) = await newsbot.say(3105, "/start ukraine-usa", **EN)
    assert "Following Ukraine and United States" in both.plain
    assert sorted(await newsbot.followed(3105)) == ["ukraine", "usa"]


async def test_an_unknown_deep_link_gets_the_welcome(newsbot: RunningBot) -> None:
    """A payload that names no catalog topic is the normal welcome and follows nothing."""
    (reply,) = await newsbot.say(3106, "/start not_a_topic", **EN)
    assert "Welcome to Newsbot" in reply.plain
    assert "Following" not in reply.plain
    assert await newsbot.followed(3106) == []


def test_every_catalog_key_is_a_valid_deep_link_payload() -> None:
    """Deep link payloads allow A-Za-z0-9_- up to 64 characters: every key fits as it is."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    for topic in load_catalog().topics:
        assert set(topic.key) <= allowed and len(topic.key) <= 64, topic.key


# -- /follow, /topics, /unfollow ----------------------------------------------------------------


async def test_follow_by_name_then_topics_lists_it(newsbot: RunningBot) -> None:
    """/follow روسيا follows the catalog topic; /topics lists it with an unfollow button."""
    (reply,) = await newsbot.say(3107, "/follow روسيا", **EN)
    assert "✓ Following Russia" in reply.plain
    assert await newsbot.followed(3107) == ["russia"]
    (again,) = await newsbot.say(3107, "/follow Russia", **EN)
    assert "already follow Russia" in again.plain
    (listing,) = await newsbot.say(3107, "/topics", **EN)
    assert "This chat follows 1 topic" in listing.plain
    assert "• Russia" in listing.plain
    async with newsbot.services.db.sessions() as session:
        topic_id = await session.scalar(select(Topic.id).where(Topic.key == "russia"))
    assert f"unfollow:{topic_id}" in listing.callback_data


async def test_several_names_and_free_phrases_follow_in_one_command(newsbot: RunningBot) -> None:
    """Names separated by commas each get a line; a phrase outside the catalog is followed
    as words."""
    (reply,) = await newsbot.say(3108, "/follow مصر، كأس العالم، في", **EN)
    lines = reply.plain.splitlines()
    assert len(lines) == 3
    assert "Following Egypt" in lines[0]
    assert "«كأس العالم»" in lines[1]
    assert "too common" in lines[2]
    keys = await newsbot.followed(3108)
    assert keys[0] == "egypt"
    assert keys[1].startswith("phrase:")


async def test_a_function_word_is_refused_with_a_hint(newsbot: RunningBot) -> None:
    """/follow في is refused (it is in every story) and the reply suggests another word."""
    (reply,) = await newsbot.say(3109, "/follow في", **EN)
    assert "too common" in reply.plain
    assert "/follow Ali Khamenei" in reply.plain
    (empty,) = await newsbot.say(3109, "/follow !!!", **EN)
    assert "no words to follow" in empty.plain
    (long,) = await newsbot.say(3109, "/follow " + "كلمة " * 30, **EN)
    assert "at most 6 words" in long.plain
    assert await newsbot.followed(3109) == []


async def test_the_browser_pages_and_toggles_topics_in_place(newsbot: RunningBot) -> None:
    """/follow alone opens the browser: «next» and the tabs edit the message, a topic button
    follows and a second tap unfollows, marked ✓ in place."""
    (browser,) = await newsbot.say(3110, "/follow", **EN)
    assert "Countries · page 1 of 9" in browser.plain
    data = browser.callback_data
    assert data[:6] == [f"browse:{kind}:0" for kind in range(6)]
    assert pick("egypt") in data
    assert "browse:0:1" in data
    assert all(len(item.encode()) <= 64 for item in data)

    await newsbot.press(3110, browser, "browse:0:1")
    edit = newsbot.fake.edits[-1]
    assert edit.method == "editMessageText"
    assert edit.plain is not None and "Countries · page 2 of 9" in edit.plain
    page = buttons(current(newsbot, browser).get("reply_markup"))
    assert ("« Previous", "browse:0:0") in page
    assert ("Next »", "browse:0:2") in page

    await newsbot.press(3110, browser, "browse:3:0")
    leaders = buttons(current(newsbot, browser).get("reply_markup"))
    assert ("Vladimir Putin", pick("putin")) in leaders
    assert ("• Leaders", "browse:3:0") in leaders

    await newsbot.press(3110, browser, pick("putin"))
    assert await newsbot.followed(3110) == ["putin"]
    marked = buttons(current(newsbot, browser).get("reply_markup"))
    assert ("✓ Vladimir Putin", pick("putin")) in marked
    await newsbot.press(3110, browser, pick("putin"))
    assert await newsbot.followed(3110) == []
    assert newsbot.fake.callback_answers[-1].text == "Unfollowed Vladimir Putin"
    unmarked = buttons(current(newsbot, browser).get("reply_markup"))
    assert ("Vladimir Putin", pick("putin")) in unmarked


async def test_the_browser_marks_what_is_followed(newsbot: RunningBot) -> None:
    """Topics already followed show ✓ when the browser opens; «All topics» opens a new one."""
    await newsbot.say(3111, "/follow مصر", **EN)
    (browser,) = await newsbot.say(3111, "/follow", **EN)
    assert ("✓ Egypt", pick("egypt")) in buttons(browser.reply_markup)
    (welcome,) = await newsbot.say(3111, "/start", **EN)
    before = len(newsbot.fake.messages_to(3111))
    await newsbot.press(3111, welcome, "browse:new")
    messages = await newsbot.fake.wait_for_messages(3111, before + 1)
    assert "Countries · page 1 of 9" in messages[-1].plain


async def test_unfollow_by_name_and_by_button(newsbot: RunningBot) -> None:
    """/unfollow NAME stops following it; the button under /topics does too and the list
    is edited in place, down to the hint when nothing is left."""
    await newsbot.say(3112, "/follow روسيا، إيران", **EN)
    (reply,) = await newsbot.say(3112, "/unfollow روسيا", **EN)
    assert "no longer follow Russia" in reply.plain
    (missing,) = await newsbot.say(3112, "/unfollow مصر", **EN)
    assert "do not follow Egypt" in missing.plain
    assert await newsbot.followed(3112) == ["iran"]

    (listing,) = await newsbot.say(3112, "/topics", **EN)
    (unfollow,) = [data for data in listing.callback_data if data.startswith("unfollow:")]
    await newsbot.press(3112, listing, unfollow)
    assert newsbot.fake.callback_answers[-1].text == "Unfollowed Iran"
    assert await newsbot.followed(3112) == []
    edited = current(newsbot, listing)
    assert "Nothing is followed here yet" in str(edited["text"])
    assert buttons(edited.get("reply_markup")) == [("Browse topics…", "browse:new")]


async def test_a_chat_follows_at_most_fifty_topics(newsbot: RunningBot) -> None:
    """Past 50 topics /follow and the buttons refuse and point to /topics."""
    countries = [topic for topic in load_catalog().topics if topic.kind == "country"]
    for start in range(0, 50, 10):
        names = "، ".join(topic.ar for topic in countries[start : start + 10])
        await newsbot.say(3128, f"/follow {names}", **EN)
    assert len(await newsbot.followed(3128)) == 50
    (refused,) = await newsbot.say(3128, f"/follow {countries[50].ar}", **EN)
    assert "follows 50 topics, the most it can" in refused.plain
    (welcome,) = await newsbot.say(3128, "/start", **EN)
    await newsbot.press(3128, welcome, pick("economy"))
    assert "the most it can" in str(newsbot.fake.callback_answers[-1].text)
    assert len(await newsbot.followed(3128)) == 50
    (listing,) = await newsbot.say(3128, "/topics", **EN)
    assert len(listing.callback_data) == 51


async def test_topics_with_nothing_followed_explains_how(newsbot: RunningBot) -> None:
    """/topics in a chat that follows nothing says how to follow."""
    (reply,) = await newsbot.say(3113, "/topics", **EN)
    assert "Nothing is followed here yet" in reply.plain
    assert "/follow Russia" in reply.plain


# -- settings -----------------------------------------------------------------------------------


async def test_mute_pauses_alerts_and_unmute_resumes(newsbot: RunningBot) -> None:
    """/mute 2 stores muted_until two hours ahead; /unmute clears it; bad hours are explained."""
    await newsbot.say(3114, "/start", **EN)
    before = utcnow()
    (reply,) = await newsbot.say(3114, "/mute 2", **EN)
    assert "paused for 2 hours" in reply.plain
    chat = await newsbot.stored_chat(3114)
    assert chat is not None and chat.muted_until is not None
    assert before + timedelta(hours=2) <= chat.muted_until <= utcnow() + timedelta(hours=2)
    (default,) = await newsbot.say(3114, "/mute", **EN)
    assert "paused for 8 hours" in default.plain
    (unmuted,) = await newsbot.say(3114, "/unmute", **EN)
    assert "on again" in unmuted.plain
    chat = await newsbot.stored_chat(3114)
    assert chat is not None and chat.muted_until is None
    for bad in ("/mute soon", "/mute 0", "/mute 500"):
        (answer,) = await newsbot.say(3114, bad, **EN)
        assert "from 1 to 168" in answer.plain
    chat = await newsbot.stored_chat(3114)
    assert chat is not None and chat.muted_until is None


async def test_quiet_hours_are_stored_as_minutes(newsbot: RunningBot) -> None:
    """/quiet 23-7 stores 23:00 and 07:00 as minutes; other spellings, bad input and off."""
    await newsbot.say(3115, "/start", **EN)
    (reply,) = await newsbot.say(3115, "/quiet 23-7", **EN)
    assert "Quiet hours: 23:00–07:00 (Asia/Riyadh)" in reply.plain
    chat = await newsbot.stored_chat(3115)
    assert chat is not None and (chat.quiet_from, chat.quiet_to) == (23 * 60, 7 * 60)
    await newsbot.say(3115, "/quiet ٢٢:٣٠-٠٦:١٥", **EN)
    chat = await newsbot.stored_chat(3115)
    assert chat is not None and (chat.quiet_from, chat.quiet_to) == (22 * 60 + 30, 6 * 60 + 15)
    (shown,) = await newsbot.say(3115, "/quiet", **EN)
    assert "22:30–06:15" in shown.plain
    for bad in ("/quiet 25-7", "/quiet 7-7", "/quiet tonight", "/quiet 23:75-7"):
        (answer,) = await newsbot.say(3115, bad, **EN)
        assert "could not read those hours" in answer.plain
    (off,) = await newsbot.say(3115, "/quiet off", **EN)
    assert "removed" in off.plain
    chat = await newsbot.stored_chat(3115)
    assert chat is not None and (chat.quiet_from, chat.quiet_to) == (None, None)


async def test_lang_switches_the_replies(newsbot: RunningBot) -> None:
    """/lang en stores English and later replies are English; the buttons switch back."""
    await newsbot.say(3116, "/start")
    (reply,) = await newsbot.say(3116, "/lang en")
    assert reply.plain.startswith("Language: English")
    chat = await newsbot.stored_chat(3116)
    assert chat is not None and chat.language == "en"
    assert newsbot.services.languages[3116] == "en"
    (welcome,) = await newsbot.say(3116, "/start")
    assert ("Russia", pick("russia")) in buttons(welcome.reply_markup)

    (chooser,) = await newsbot.say(3116, "/lang")
    assert chooser.callback_data == ["lang:ar", "lang:en"]
    assert ("✓ English", "lang:en") in buttons(chooser.reply_markup)
    await newsbot.press(3116, chooser, "lang:ar")
    chat = await newsbot.stored_chat(3116)
    assert chat is not None and chat.language == "ar"
    assert "العربية" in str(current(newsbot, chooser)["text"])
    (unknown,) = await newsbot.say(3116, "/lang fr")
    assert unknown.callback_data == ["lang:ar", "lang:en"]


async def test_stop_removes_the_subscriptions_and_start_resumes(newsbot: RunningBot) -> None:
    """/stop removes every subscription, deactivates the chat and says how many; /start
    makes it active again."""
    await newsbot.say(3117, "/follow روسيا، غزة", **EN)
    (reply,) = await newsbot.say(3117, "/stop", **EN)
    assert "2 topics removed" in reply.plain
    assert "/start" in reply.plain
    assert await newsbot.followed(3117) == []
    chat = await newsbot.stored_chat(3117)
    assert chat is not None and not chat.active
    (muted,) = await newsbot.say(3117, "/mute 3", **EN)
    assert "paused for 3 hours" in muted.plain
    chat = await newsbot.stored_chat(3117)
    assert chat is not None and not chat.active  # a setting does not undo /stop
    await newsbot.say(3117, "/start", **EN)
    chat = await newsbot.stored_chat(3117)
    assert chat is not None and chat.active


# -- groups and membership ----------------------------------------------------------------------


async def test_only_group_admins_change_its_topics(newsbot: RunningBot) -> None:
    """In a group a member is refused politely (commands and buttons); an admin follows."""
    group, admin, member = -3118, 3918, 3919
    newsbot.fake.add_chat(group, chat_type="group", title="غرفة الأخبار")
    newsbot.fake.set_admins(group, [admin])
    (refused,) = await newsbot.say(group, "/follow روسيا", user_id=member, **EN)
    assert "Only this group's admins" in refused.plain
    assert await newsbot.followed(group) == []
    for command in ("/mute 2", "/quiet 23-7", "/lang ar", "/stop"):
        (answer,) = await newsbot.say(group, command, user_id=member, **EN)
        assert "Only this group's admins" in answer.plain

    (welcome,) = await newsbot.say(group, "/start", user_id=member, **EN)
    assert "only its admins choose the topics" in welcome.plain
    await newsbot.press(group, welcome, pick("egypt"), user_id=member)
    assert newsbot.fake.callback_answers[-1].text == (
        "Only this group's admins can change what it follows."
    )
    assert await newsbot.followed(group) == []

    (done,) = await newsbot.say(group, "/follow روسيا", user_id=admin, **EN)
    assert "✓ Following Russia" in done.plain
    await newsbot.press(group, welcome, pick("egypt"), user_id=admin)
    assert await newsbot.followed(group) == ["russia", "egypt"]
    (listing,) = await newsbot.say(group, "/topics", user_id=member, **EN)
    assert "follows 2 topics" in listing.plain


async def test_a_group_that_becomes_a_supergroup_keeps_its_topics(newsbot: RunningBot) -> None:
    """The migrate service message moves the group's subscriptions to the supergroup's id."""
    group, admin = -3120, 3920
    newsbot.fake.add_chat(group, chat_type="group")
    newsbot.fake.set_admins(group, [admin])
    await newsbot.say(group, "/follow روسيا، إيران", user_id=admin, **EN)
    supergroup = newsbot.fake.migrate_group(group)

    async def moved() -> bool:
        return await newsbot.followed(supergroup) == ["russia", "iran"]

    await eventually(moved)
    assert await newsbot.followed(group) == []
    assert await newsbot.stored_chat(group) is None
    chat = await newsbot.stored_chat(supergroup)
    assert chat is not None and chat.language == "en"


async def test_a_reader_who_blocks_the_bot_is_deactivated(newsbot: RunningBot) -> None:
    """my_chat_member "kicked" in a private chat (the reader blocked the bot) deactivates it;
    unblocking alone does not undo it, /start does."""
    await newsbot.say(3121, "/follow روسيا", **EN)
    newsbot.fake.member_update(3121, "kicked")

    async def inactive() -> bool:
        chat = await newsbot.stored_chat(3121)
        return chat is not None and not chat.active

    await eventually(inactive)
    newsbot.fake.member_update(3121, "member")
    await newsbot.say(3121, "/help", **EN)
    assert await inactive()
    await newsbot.say(3121, "/start", **EN)
    assert not await inactive()


async def test_added_to_a_group_registers_and_greets_removed_deactivates(
    newsbot: RunningBot,
) -> None:
    """The bot added to a group registers it and says hello; removed, the group is inactive."""
    group = -3122
    newsbot.fake.member_update(group, "member", chat_type="group", title="Desk")
    (hello,) = await newsbot.fake.wait_for_messages(group, 1)
    assert "/follow" in hello.plain
    chat = await newsbot.stored_chat(group)
    assert chat is not None and chat.active and chat.kind == "group"
    newsbot.fake.member_update(group, "left")

    async def inactive() -> bool:
        chat = await newsbot.stored_chat(group)
        return chat is not None and not chat.active

    await eventually(inactive)


# -- guidance, help, errors and menus -----------------------------------------------------------


async def test_plain_text_in_private_gets_guidance(newsbot: RunningBot) -> None:
    """Plain text suggests /follow and /search with it, and a button for a catalog topic."""
    (reply,) = await newsbot.say(3123, "روسيا", **EN)
    assert "/follow روسيا" in reply.plain
    assert "/search روسيا" in reply.plain
    assert reply.callback_data == [pick("russia")]
    await newsbot.press(3123, reply, pick("russia"))
    assert await newsbot.followed(3123) == ["russia"]
    (free,) = await newsbot.say(3123, "<b>أسعار الذهب</b>", **EN)
    assert "/search <b>أسعار الذهب</b>" in free.plain
    assert free.callback_data == []
    (long,) = await newsbot.say(3123, "خبر " * 200, **EN)
    assert "/help" in long.plain


async def test_plain_text_in_a_group_is_ignored(newsbot: RunningBot) -> None:
    """The bot does not answer conversation in a group, nor commands meant for other bots."""
    group = -3124
    newsbot.fake.add_chat(group, chat_type="supergroup")
    newsbot.fake.send_text(group, "روسيا")
    newsbot.fake.send_text(group, "/weather@OtherBot")
    newsbot.fake.send_text(group, "/weather")
    (known,) = await newsbot.say(group, "/nothing@NewsbotTestBot", **EN)
    assert "I do not know /nothing" in known.plain
    await asyncio.sleep(0.2)
    assert len(newsbot.fake.messages_to(group)) == 1


async def test_an_unknown_command_points_to_help(newsbot: RunningBot) -> None:
    """An unknown command in a private chat gets a pointer to /help."""
    (reply,) = await newsbot.say(3125, "/subscribe روسيا", **EN)
    assert reply.plain == "I do not know /subscribe. /help lists the commands."


async def test_help_lists_reader_commands_and_editors_see_theirs(newsbot: RunningBot) -> None:
    """/help lists every reader command; an editor also gets the editors' commands."""
    (reader,) = await newsbot.say(3126, "/help", **EN)
    for command in ("/follow", "/unfollow", "/topics", "/search", "/latest", "/mute", "/stop"):
        assert command in reader.plain
    assert "/alert" not in reader.plain
    (editor,) = await newsbot.say(EDITOR, "/help", **EN)
    assert "/alert" in editor.plain and "/addfeed" in editor.plain


async def test_a_failed_reply_is_logged_and_the_reader_asked_to_retry(
    newsbot: RunningBot,
) -> None:
    """When answering fails the error handler apologises and the bot keeps working."""
    newsbot.fake.fail_next("sendMessage", 400, "Bad Request: something odd", chat_id=3127)
    newsbot.fake.send_text(3127, "/help", **EN)
    (sorry,) = await newsbot.fake.wait_for_messages(3127, 1)
    assert sorry.plain == "Sorry, something went wrong. Please try again."
    (works,) = await newsbot.say(3127, "/topics", **EN)
    assert "Nothing is followed" in works.plain


async def test_command_menus_are_published_in_arabic_and_english(newsbot: RunningBot) -> None:
    """setMyCommands: the reader commands by default, in Arabic and in English; the editors'
    commands only in each editor's own chat."""
    await newsbot.fake.wait_for_call("setMyCommands", 5)
    english = {item["command"]: item["description"] for item in newsbot.fake.commands("en")}
    assert english["follow"] == "Follow a topic, or browse them all"
    assert {"start", "follow", "unfollow", "topics", "search", "latest", "stop"} <= set(english)
    assert "alert" not in english
    names = [item["command"] for item in newsbot.fake.commands("ar")]
    assert names == list(english)
    assert [item["command"] for item in newsbot.fake.commands("")] == names
    scope = {"type": "chat", "chat_id": EDITOR}
    editor = [item["command"] for item in newsbot.fake.commands("", scope)]
    assert {"alert", "feeds", "addfeed", "removefeed", "stats"} <= set(editor)
    assert [item["command"] for item in newsbot.fake.commands("en", scope)] == editor
