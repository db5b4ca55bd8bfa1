"""Pretraining: a corpus tokenized once into memory-mapped shards, a loader that each DDP rank reads its own part
of and that resumes at the exact token, and the run itself (gradient accumulation, autocast, DDP via torchrun).
"""
