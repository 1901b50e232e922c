"""The resolver's decisions and caches (sans-IO)."""
