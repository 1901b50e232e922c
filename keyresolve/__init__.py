"""keyresolve: publish and resolve public encryption keys for email addresses."""

__version__ = "0.1.0"
