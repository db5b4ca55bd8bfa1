"""scratchlm: the library that the LLM-from-scratch course builds.

The names a lesson needs most are importable from the package itself; everything else lives in the module
named for its job (model, attention, generation, training, checkpoint, data, tokenizers, hf).
"""

from scratchlm.attention import Head
from scratchlm.bigram import BigramLanguageModel
from scratchlm.generation import generate
from scratchlm.model import GPT, GPTConfig
from scratchlm.runtime import get_device, pick, set_seed
from scratchlm.training import TrainConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "BigramLanguageModel",
    "GPTConfig",
    "Head",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "generate",
    "get_device",
    "pick",
    "set_seed",
    "train",
]
