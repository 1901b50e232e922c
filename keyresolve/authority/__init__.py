"""Authoritative answering (sans-IO): answers, the fast path, transfers, refresh timers, policy, rate limits."""
