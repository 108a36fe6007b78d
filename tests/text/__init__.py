"""The Arabic text engine: normalising, topics, matching, breaking markers, relevance."""
