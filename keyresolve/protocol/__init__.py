"""The wire protocol (sans-IO): codes, errors, names, records, messages, signatures, serials."""
