"""Feeds in: fetching, parsing, canonical links, indexing the parsed entries and storing them
as articles, each in its story (``stories``), and the feeds editors add. Newly stored articles
are handed on through a callback (``ingest.NewArticles``) that the composition root wires to
the fan-out."""
