"""Pretraining: a corpus tokenized once into memory-mapped shards, a loader that each DDP rank reads its own part
of and that resumes at the exact token, and the run itself (gradient accumulation, autocast, DDP via torchrun).

    index, stats = prepare("python-stdlib", "r50k_base", "runs/stdlib-r50k")      # `corpora`, `shards`
    loader = ShardLoader(index, "train", block_size=64, batch_size=12)              # `loader`
    result = pretrain(PretrainConfig(train=preset("cpu", data="runs/stdlib-r50k")))  # `config`, `loop`
"""

from scratchlm.pretraining.config import PretrainConfig, lr_schedule
from scratchlm.pretraining.corpora import DEFAULT_CORPUS, Corpus, open_corpus
from scratchlm.pretraining.loader import ShardLoader
from scratchlm.pretraining.loop import PeerLost, PretrainResult, pretrain
from scratchlm.pretraining.shards import PrepareConfig, PrepareStats, ShardIndex, prepare

__all__ = [
    "DEFAULT_CORPUS",
    "Corpus",
    "PeerLost",
    "PrepareConfig",
    "PrepareStats",
    "PretrainConfig",
    "PretrainResult",
    "ShardIndex",
    "ShardLoader",
    "lr_schedule",
    "open_corpus",
    "prepare",
    "pretrain",
]
