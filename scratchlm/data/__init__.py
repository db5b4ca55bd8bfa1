"""Data: where texts come from (`sources`: registry, verified fetch, `load_text`) and how they become token
batches (`tokens`: `load_splits`, `split`, `get_batch`)."""

from scratchlm.data.sources import MIRROR_ENV, REGISTRY, DataFile, default_data_dir, fetch, load_text, sha256_of
from scratchlm.data.tokens import TokenSplits, get_batch, load_splits, split

__all__ = [
    "MIRROR_ENV",
    "REGISTRY",
    "DataFile",
    "TokenSplits",
    "default_data_dir",
    "fetch",
    "get_batch",
    "load_splits",
    "load_text",
    "sha256_of",
    "split",
]
