"""Newsbot's core: configuration, feeds, the text engine, alerts and the command line."""

__version__ = "0.1.0"
