"""The Arabic text engine: normalising and tokenising, the topic catalog and its aliases, the
matcher and the breaking-news markers. Pure: no storage, HTTP or Telegram."""
