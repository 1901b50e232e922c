"""Hostile drivers for keyresolve's daemons and zone compiler (fuzz/README.md).

Each driver starts its own daemons on loopback in a temporary directory,
throws seeded, bounded hostile input at them, and reports every finding
(a daemon died, logged a traceback, stopped answering a known-good query,
or a zone file raised an exception) as one line, with its case saved to
a file for replay. Not part of the installed package.
"""
