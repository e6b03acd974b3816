"""Lines out: the JSON, text and CloudEvents encodings, the shaping, the writer and its spool."""
