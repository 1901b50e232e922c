"""The registry's default durations (pure, no imports): the state machine's
defaults and the configuration's, defined once (docs/registry.md)."""

#: Seconds a mailed challenge or token stays valid by default: a day, long
#: enough for mail delays and an owner away for the night, short enough that
#: a stale mailbox copy is useless (the `confirm_within` of docs/registry.md).
DEFAULT_CONFIRM_WITHIN = 86_400
#: Seconds between re-verifications of an owner by default (180 days).
DEFAULT_REVERIFY_EVERY = 180 * 86_400
#: Seconds an owner has to answer a re-verification by default (14 days).
DEFAULT_REVERIFY_GRACE = 14 * 86_400


__all__ = ["DEFAULT_CONFIRM_WITHIN", "DEFAULT_REVERIFY_EVERY", "DEFAULT_REVERIFY_GRACE"]
