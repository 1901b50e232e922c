"""Zone data (sans-IO): the in-memory model, the zone-file grammar and readers, the stored-node format."""
