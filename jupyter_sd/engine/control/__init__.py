"""ControlNet and IP-Adapter the way sd-webui-controlnet does them: preprocessors, control maps, units.

``modules`` names the preprocessors and their sliders, ``resolution`` the processor-resolution arithmetic,
``preprocessors`` runs the built-in ones (OpenCV, imported only when one runs), ``maps`` fits a map to the size
painted, ``weights`` holds the control modes' arithmetic and ``unit_maps`` takes a unit's picture to its tensor.
"""
