"""A1111's Extras tab in the notebook: ``%paint upscale`` and `upscale()` (the engine's work is `engine.extras`)."""
