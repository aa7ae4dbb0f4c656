"""Test harness: the pieces of a cluster the tests play (pytest plugins and helpers)."""
