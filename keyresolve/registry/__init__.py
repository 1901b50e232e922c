"""The registry (issue #20): owners publish, replace and withdraw their own
keys, proven by possession of the keys and by their mailbox. Pure:
`messages` (the wire formats of docs/protocol.md 8E, sealed with
`protocol.hpke`), `state` (the registration state machine), `mails` (the mails it
sends, RFC 5322), `outbox` (when to send and retry them). The queue, the
store, SMTP and the daemon live outside this package.
"""
