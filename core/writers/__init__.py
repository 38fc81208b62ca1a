"""Consumers that persist normalized events (Parquet tables)."""
