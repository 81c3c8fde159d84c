"""Analysis: the sensitivity estimates, coverage, surrogate screening."""
