"""Slow, obviously-correct re-implementations written from the papers' equations."""
