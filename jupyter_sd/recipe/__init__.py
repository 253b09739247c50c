"""What a picture is: the options (`PaintRequest` and its fields), A1111's infotext and what pasted data means.

Pure Python, no torch and no IPython: the CLI, Ray workers, batch files and the lab extension's tools read recipes
without loading a model. Every front end is generated from the fields here.
"""
