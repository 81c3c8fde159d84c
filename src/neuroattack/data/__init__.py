"""Data in: downloads, stimulus sets, recordings (every source and format of each)."""
