"""The process: what it keeps across restarts (the state file) and the RESYNC rounds."""
