"""Keeping sources in sync."""
