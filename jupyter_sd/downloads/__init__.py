"""Getting model files into the models folder: plain HTTP(S) with resume, civitai, and the Hugging Face hub."""
