"""Test harness: the operator as a real process, and clusters (emulated or real) to drive."""
