"""trio shells: UDP/TCP servers and clients around the sans-IO core."""
