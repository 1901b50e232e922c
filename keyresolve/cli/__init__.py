"""The `keyresolve` command line and the configuration files it reads."""
