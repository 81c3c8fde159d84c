"""Attacks: the norm balls, the batched engine, untargeted and targeted attacks."""
