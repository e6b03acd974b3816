"""What every layer may use: the settings, the label selector grammar, the counters, JSON and zstd."""
