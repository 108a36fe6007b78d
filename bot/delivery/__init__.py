"""Alerts out: the fan-out into the outbox, rendering, pacing and sending each delivery and
recording its outcome, and the transport to the Bot API."""
