"""The chat format: conversations as messages, as JSONL files, and as token ids with a loss mask.

A conversation is what the ecosystem exchanges (OpenAI's and Hugging Face's chat format): a list of messages
`{"role": "system" | "user" | "assistant", "content": "..."}`, one conversation per JSONL line as
`{"messages": [...]}`. The template turns it into ids with four special tokens:

    <|system|>You are terse.<|end|><|user|>Reverse stone.<|end|><|assistant|>enots<|end|>

Each message is its role's token, its content's ids, `<|end|>`. The loss mask is 1 on the ids the model must
learn to produce, an assistant's content and the `<|end|>` that closes it (so it learns to stop), and 0 on
everything given to it: the system prompt, the user's words and the role tokens. To ask the model for a reply,
the prompt is the conversation so far followed by `<|assistant|>` (`prompt_ids`); generation stops at `<|end|>`.

`render` and `parse` are inverses: `parse(render(messages).ids) == messages`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchlm.errors import ConversationError, DataError, TokenizerError
from scratchlm.tokenizers.extended import ExtendedTokenizer

ROLES = ("system", "user", "assistant")
END = "<|end|>"
ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}
CHAT_TOKENS = (*ROLE_TOKENS.values(), END)

Message = dict[str, str]


def add_chat_tokens(tokenizer: Any) -> ExtendedTokenizer:
    """`tokenizer` with the four chat tokens appended after its vocabulary (the ids its model must grow by)."""
    return ExtendedTokenizer(tokenizer, CHAT_TOKENS)


def has_chat_tokens(tokenizer: Any) -> bool:
    return all(name in getattr(tokenizer, "special_tokens", {}) for name in CHAT_TOKENS)


def require_chat_tokens(tokenizer: Any, what: str = "this checkpoint") -> None:
    """A one-line ConversationError unless `tokenizer` has the chat tokens (a base model's does not)."""
    if not has_chat_tokens(tokenizer):
        raise ConversationError(
            f"{what} has no chat tokens ({', '.join(CHAT_TOKENS)}): it is a base model; fine-tune it first "
            "(python -m scratchlm sft --base CKPT --out DIR) and chat with that"
        )


def check_messages(messages: Any, *, needs_assistant: bool = True) -> list[Message]:
    """`messages` as a list of {"role", "content"} dicts, or a one-line ConversationError saying what is wrong.

    Roles are system, user and assistant; a system message may only come first; needs_assistant: at least one
    assistant message (a training conversation without one teaches nothing: its loss mask would be all 0).
    """
    if not isinstance(messages, list) or not messages:
        raise ConversationError("a conversation is a non-empty list of messages")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ConversationError(f"message {i} must be an object with exactly 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ConversationError(f"message {i} has the unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ConversationError(f"message {i}'s content must be a string, got {type(content).__name__}")
        if role == "system" and i > 0:
            raise ConversationError(f"message {i} is a system message; only the first message may be one")
        checked.append({"role": role, "content": content})
    if needs_assistant and not any(m["role"] == "assistant" for m in checked):
        raise ConversationError("the conversation has no assistant message, so nothing to learn from")
    return checked


@dataclass(frozen=True)
class Rendered:
    """A conversation as ids (L,) and its loss mask (L,): mask[i] = 1 when ids[i] is to be learned."""

    ids: list[int]
    mask: list[int]


def _encode(tokenizer: ExtendedTokenizer, text: str, where: str) -> list[int]:
    try:
        return tokenizer.encode(text)
    except TokenizerError as e:
        raise ConversationError(f"{where}: {e}") from None


def render(messages: Sequence[Message], tokenizer: ExtendedTokenizer) -> Rendered:
    """Ids and loss mask of a conversation (see the module docstring for the layout)."""
    require_chat_tokens(tokenizer, "the tokenizer")
    end = tokenizer.special_id(END)
    ids: list[int] = []
    mask: list[int] = []
    for i, message in enumerate(check_messages(list(messages), needs_assistant=False)):
        content = _encode(tokenizer, message["content"], f"message {i}")
        learned = int(message["role"] == "assistant")
        ids += [tokenizer.special_id(ROLE_TOKENS[message["role"]]), *content, end]
        mask += [0, *[learned] * len(content), learned]
    return Rendered(ids, mask)


def prompt_ids(messages: Sequence[Message], tokenizer: ExtendedTokenizer) -> list[int]:
    """The ids that ask for the next assistant message: the conversation so far, then `<|assistant|>`."""
    checked = check_messages(list(messages), needs_assistant=False)
    if checked[-1]["role"] != "user":
        raise ConversationError(f"a reply is asked for after a user message, not after a {checked[-1]['role']} one")
    return [*render(checked, tokenizer).ids, tokenizer.special_id(ROLE_TOKENS["assistant"])]


def parse(ids: Sequence[int], tokenizer: ExtendedTokenizer) -> list[Message]:
    """The messages of rendered ids: the inverse of `render`. A last message without its `<|end|>` (a reply
    cut short) is returned as far as it goes; ids that are not in the template's layout raise ConversationError."""
    require_chat_tokens(tokenizer, "the tokenizer")
    roles = {tokenizer.special_id(token): role for role, token in ROLE_TOKENS.items()}
    end = tokenizer.special_id(END)
    messages: list[Message] = []
    role, content = None, []
    for position, i in enumerate(ids):
        if role is None:
            if i not in roles:
                raise ConversationError(f"id {i} at position {position}: a message must start with a role token")
            role, content = roles[i], []
        elif i == end:
            messages.append({"role": role, "content": tokenizer.decode(content)})
            role = None
        elif i in roles:
            raise ConversationError(f"a role token at position {position} inside a {role} message (no {END})")
        else:
            content.append(i)
    if role is not None:
        messages.append({"role": role, "content": tokenizer.decode(content)})
    return messages


def read_jsonl(path: str | Path) -> list[list[Message]]:
    """The conversations of a JSONL file, one `{"messages": [...]}` per line (blank lines skipped).

    Any line that is not such a conversation (bad JSON, no "messages", an unknown role, no assistant message)
    raises a one-line ConversationError naming the file and the line number.
    """
    return [conversation for _, conversation in read_numbered_jsonl(path)]


def read_numbered_jsonl(path: str | Path) -> list[tuple[int, list[Message]]]:
    """`read_jsonl`, each conversation with the number of its line (for messages about it later)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such conversation file: {path}")
    conversations = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConversationError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict) or "messages" not in record:
                raise ConversationError(f'{path}:{number}: expected an object {{"messages": [...]}}')
            try:
                conversations.append((number, check_messages(record["messages"])))
            except ConversationError as e:
                raise ConversationError(f"{path}:{number}: {e}") from None
    if not conversations:
        raise ConversationError(f"{path} holds no conversations")
    return conversations


def fit_to_context(
    messages: Sequence[Message], tokenizer: ExtendedTokenizer, context: int
) -> tuple[list[Message], list[Message]]:
    """Keep a conversation's prompt within `context` tokens by dropping its oldest exchanges.

    Returns (kept, dropped): a system message is always kept, then whole turns are dropped from the front until
    `prompt_ids(kept)` fits. If the last user message alone (with the system message) does not fit, a
    ConversationError says how long it is: nothing can be dropped to make room for it.
    """
    kept = check_messages(list(messages), needs_assistant=False)
    system = kept[:1] if kept[0]["role"] == "system" else []
    turns = kept[len(system) :]
    dropped: list[Message] = []
    while len(prompt_ids(system + turns, tokenizer)) > context:
        if len(turns) == 1:
            n = len(prompt_ids(system + turns, tokenizer))
            raise ConversationError(
                f"the message is {n} tokens with the chat template, longer than the model's context of {context}; "
                "shorten it"
            )
        dropped.append(turns.pop(0))
        while turns and turns[0]["role"] != "user":  # a reply without its question is dropped with it
            dropped.append(turns.pop(0))
    return system + turns, dropped
