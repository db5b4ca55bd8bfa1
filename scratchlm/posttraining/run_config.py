"""What the configs of post-training runs share: their own fields beside a `train: TrainConfig`.

`SFTConfig` and `RLConfig` each hold the options of their method and, in `train`, the optimisation, output and
system options of the library's training loop. This mixin gives both one way to replace fields by name (a name that
is not the config's own goes to `train`) and to round-trip through a checkpoint, tagged with `KIND` so that one run's
folder is never read as another's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from scratchlm.errors import ConfigError
from scratchlm.training import TrainConfig


class WrapsTrainConfig:
    """Mixin for a frozen dataclass with a `train: TrainConfig` field. KIND tags its saved form; DESCRIPTION names
    the run in the error for a saved config of another kind ("a fine-tuning run")."""

    KIND: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    train: TrainConfig

    def replace(self, **changes: Any) -> Any:
        """A copy with fields replaced by name: this config's own and `TrainConfig`'s (max_iters, out_dir, ...)."""
        own = {f.name for f in dataclasses.fields(self)}
        mine = {k: v for k, v in changes.items() if k in own}
        rest = {k: v for k, v in changes.items() if k not in own}
        if rest:
            mine["train"] = mine.get("train", self.train).replace(**rest)
        return dataclasses.replace(self, **mine)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as checkpoints store it (`kind` tells it from other runs' configs)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}
        return {"kind": self.KIND, **own, "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Any:
        saved = dict(saved)
        if saved.pop("kind", None) != cls.KIND or not isinstance(saved.get("train"), dict):
            raise ConfigError(f"not the config of {cls.DESCRIPTION}")
        return cls(train=TrainConfig.from_dict(saved.pop("train")), **saved)
