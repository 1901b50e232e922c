"""The LMDB store: the only package that imports lmdb."""
