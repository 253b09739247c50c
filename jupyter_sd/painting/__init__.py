"""The kernel's painting session: a request's pictures loaded, painted on the one engine, saved and shown.

`session.render` is the one path every picture takes, from a cell, a plot, a batch or the panel.
"""
