"""Alerts out: fan-out, rendering, pacing, sending, the Bot API transport."""
