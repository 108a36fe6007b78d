"""Storage on SQLite and PostgreSQL: search, locks, migrations."""
