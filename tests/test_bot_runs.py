"""The bot starts as ``newsbot run`` builds it: services wired, commands published."""

from __future__ import annotations

from tests.botharness import RunningBot


async def test_the_bot_starts_and_publishes_its_services(newsbot: RunningBot) -> None:
    """After start the handlers have their services and the sender is running."""
    assert newsbot.services.topics.catalog.topics
    await newsbot.fake.wait_for_call("getUpdates")
