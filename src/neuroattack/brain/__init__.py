"""The brain side: the in-silico monkey, site models, the recording session."""
