"""The Telegram handlers, driven through the real Application against the fake Bot API."""
