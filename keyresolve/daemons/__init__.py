"""Daemons: configuration, store and network wired together."""
