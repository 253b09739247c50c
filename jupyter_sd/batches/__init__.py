"""Batches: a file, folder or list of requests, painted in order here or unchanged on a Ray cluster."""
