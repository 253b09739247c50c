"""Loading what users download: single files (full checkpoints, transformer-only, GGUF), quantization, memory plans.

`files` says what a file holds (family, parts, GGUF type) from its header; `flux_keys` maps BFL/ComfyUI tensor
names to diffusers'; `single_file` builds the pipeline around a file, its other parts from ``--model-config`` or
the models folder (`parts`); `quant` applies ``--quant``; `plan` chooses where each part lives on a small GPU.
"""
