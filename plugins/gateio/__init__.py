"""Venue plugin (being written; registers nothing yet)."""
