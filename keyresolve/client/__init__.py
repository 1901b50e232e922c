"""The client's pure core: sealed messages and signatures (docs/seal-format.md).

No I/O here: bytes in, bytes and decisions out; randomness is passed in.
"""
