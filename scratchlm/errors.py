"""Errors that a user can cause and fix.

Everything the library raises because of bad *input* (a config, a file, a prompt) derives from
`ScratchLMError`. The CLI turns these into one line on stderr and exit code 2; a notebook shows the message
without a traceback into library internals. Programming errors stay ordinary Python exceptions.
"""


class ScratchLMError(Exception):
    """Base class for errors caused by input the user can fix."""


class ConfigError(ScratchLMError, ValueError):
    """An invalid configuration value (sizes, presets, learning rates...)."""


class DataError(ScratchLMError):
    """A data file that is missing, unreachable or fails its checksum."""


class TokenizerError(ScratchLMError, ValueError):
    """Text a tokenizer cannot encode, or a tokenizer file it cannot read."""


class CheckpointError(ScratchLMError):
    """A checkpoint that is missing, corrupt, truncated or from something else."""


class OutputError(ScratchLMError):
    """A file that cannot be written: no permission, a missing drive, a full disk, a folder in its place."""


class ConversationError(ScratchLMError, ValueError):
    """A conversation that breaks the chat format: an unknown role, no assistant turn, too long for the context."""
