"""The registry's pure core (issue #20): owners publish, replace and withdraw
their own keys, confirmed by mail. Nothing here does I/O: clocks, randomness
and bytes are passed in; the trio and LMDB shells live elsewhere."""
