"""Durable state of the daemon: audit chain, paired clients, keys (SQLite and files)."""
