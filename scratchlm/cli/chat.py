"""`python -m scratchlm chat`: talk to a fine-tuned checkpoint in the terminal, several turns, tokens as they come.

Commands: /reset starts a new conversation, /quit (or end of input, Ctrl-D) leaves, /help lists them. The whole
conversation is the prompt of every reply; when it no longer fits the model's context (with room for the reply),
the oldest exchanges are dropped and the chat says so. Ctrl-C during a reply stops that reply (what was shown is
kept); at the prompt it leaves.
"""

from __future__ import annotations

import argparse
import sys

import torch

from scratchlm import checkpoint
from scratchlm.cli.args import non_negative_float, positive_int
from scratchlm.cli.sample import TextStream
from scratchlm.errors import ConfigError, ConversationError
from scratchlm.generation import stream
from scratchlm.posttraining.chat import END, fit_to_context, prompt_ids, require_chat_tokens
from scratchlm.runtime import configure_threads, get_device

HELP = "commands: /reset (new conversation), /quit (or Ctrl-D), /help"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="talk to a fine-tuned checkpoint (multi-turn, streamed)",
        description=(
            "An interactive chat with a checkpoint written by 'sft'. Each reply is streamed as it is sampled and "
            "ends at the model's end-of-turn token. " + HELP + ". Old exchanges are dropped, with a note, when the "
            "conversation outgrows the model's context."
        ),
    )
    p.add_argument("--ckpt", metavar="PATH", default="out/sft", help="checkpoint or its folder (default: out/sft/)")
    p.add_argument("--system", help="a system message that opens every conversation")
    p.add_argument(
        "--temperature", type=non_negative_float, default=0.0, help="softmax temperature; 0 = greedy (default)"
    )
    p.add_argument("--max-new-tokens", type=positive_int, help="longest reply (default: a quarter of the context)")
    p.add_argument("--seed", type=int, help="random seed, for reproducible replies at temperature > 0")
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    p.set_defaults(func=run)


class Chat:
    """A conversation with `model`: `reply(text)` adds a user message and streams the answer to stdout."""

    def __init__(self, model, tokenizer, *, system: str | None, temperature: float, max_new_tokens: int,
                 seed: int | None):  # fmt: skip
        self.model, self.tokenizer = model, tokenizer
        self.system, self.temperature, self.seed = system, temperature, seed
        self.max_new_tokens = max_new_tokens
        self.context = model.config.block_size
        self.end = tokenizer.special_id(END)
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.turn = 0

    def reply(self, text: str) -> None:
        messages = [*self.messages, {"role": "user", "content": text}]
        kept, dropped = fit_to_context(messages, self.tokenizer, self.context - self.max_new_tokens)
        ids = prompt_ids(kept, self.tokenizer)  # raises before anything is printed if the text cannot be encoded
        if dropped:
            print(f"(the conversation outgrew the context of {self.context} tokens: dropped the oldest "
                      f"{len(dropped)} message{'s' * (len(dropped) > 1)})")  # fmt: skip
        seed = None if self.seed is None else self.seed + self.turn
        self.turn += 1
        text_stream, reply = TextStream(self.tokenizer), []
        budget = min(self.max_new_tokens, self.context - len(ids))
        print("assistant> ", end="", flush=True)
        ended = False
        try:
            for token in stream(self.model, torch.tensor([ids]), budget, temperature=self.temperature, seed=seed):
                t = int(token[0, 0])
                if t == self.end:
                    ended = True
                    break
                reply.append(t)
                print(text_stream.push([t]), end="", flush=True)
        except KeyboardInterrupt:
            print(" (stopped)", end="")
        print(text_stream.close(), flush=True)
        if not ended and len(reply) == budget:
            print(f"(the reply was cut at {budget} tokens)")
        self.messages = [*kept, {"role": "assistant", "content": self.tokenizer.decode(reply)}]


def run(args: argparse.Namespace) -> int:
    configure_threads()
    device = get_device(args.device)
    model, tokenizer = checkpoint.load_model(args.ckpt, device=device)
    require_chat_tokens(tokenizer, str(checkpoint.resolve_path(args.ckpt)))
    context = model.config.block_size
    max_new_tokens = args.max_new_tokens or max(1, context // 4)
    if max_new_tokens >= context:
        raise ConfigError(f"--max-new-tokens {max_new_tokens} leaves no room for the conversation in the context of "
                          f"{context} tokens")  # fmt: skip
    chat = Chat(model, tokenizer, system=args.system, temperature=args.temperature,
                max_new_tokens=max_new_tokens, seed=args.seed)  # fmt: skip
    print(f"chatting with {checkpoint.resolve_path(args.ckpt)} (context {context} tokens). {HELP}", flush=True)
    while True:
        print("you> ", end="", flush=True)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            print()
            return 0
        if not line:  # end of input
            print()
            return 0
        text = line.strip()
        if not text:
            print("(an empty message: type something to say, or /help)")
        elif text in ("/quit", "/exit"):
            return 0
        elif text == "/reset":
            chat.reset()
            print("(a new conversation)")
        elif text == "/help":
            print(HELP)
        elif text.startswith("/"):
            print(f"(unknown command {text.split()[0]}; {HELP})")
        else:
            try:
                chat.reply(text)
            except ConversationError as e:
                print(f"(not sent: {e})", flush=True)
