"""Feeds in: fetching, parsing, canonical links, ingestion."""
