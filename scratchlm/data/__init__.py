"""Data: where texts come from (`sources.load_text`, over the registry and verified fetch of
`scratchlm.downloads`, re-exported here) and how they become token batches (`tokens`: `load_splits`, `split`,
`get_batch`)."""

from scratchlm.data.sources import load_text
from scratchlm.data.tokens import TokenSplits, get_batch, load_splits, split
from scratchlm.downloads import MIRROR_ENV, REGISTRY, DataFile, default_data_dir, fetch, sha256_of

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
