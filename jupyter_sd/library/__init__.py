"""The models folder in A1111's layout: where it is, what is in it, hashes, kinds, copies and Drive. No torch.

Its public face is re-exported here, so callers write ``library.find_model(...)``; the modules hold one job each:
`folder` (where the models folder is), `find` (what is in it), `hashes` (A1111's hashes, cached), `kinds` (what
kind of model a file or folder is), `transfer` (copying with progress and a space check), `drive` (Google Drive).
"""

from .find import (
    BIG_FILE,
    PICKLE_SUFFIXES,
    SUFFIXES,
    ModelFile,
    close_matches,
    find_model,
    find_models,
    find_upscaler,
    format_size,
    format_table,
    kind_named,
    list_models,
    model_row,
    models_table,
    not_found_message,
    safetensors_metadata,
    upscaler_missing_message,
)
from .folder import ENV_VAR, SUBFOLDERS, default_models_dir, is_models_dir_set, models_dir, set_models_dir, subfolder
from .hashes import addnet_hash, has_cached_hash, hash_cache_path, old_model_hash, sha256, short_hash

__all__ = [
    "BIG_FILE",
    "addnet_hash",
    "hash_cache_path",
    "old_model_hash",
    "sha256",
    "ENV_VAR",
    "ModelFile",
    "PICKLE_SUFFIXES",
    "SUBFOLDERS",
    "SUFFIXES",
    "close_matches",
    "default_models_dir",
    "find_model",
    "find_models",
    "find_upscaler",
    "format_size",
    "format_table",
    "has_cached_hash",
    "is_models_dir_set",
    "kind_named",
    "list_models",
    "model_row",
    "models_dir",
    "models_table",
    "not_found_message",
    "safetensors_metadata",
    "set_models_dir",
    "short_hash",
    "subfolder",
    "upscaler_missing_message",
]
