"""`python -m scratchlm sample`: continue a prompt with a trained checkpoint."""

from __future__ import annotations

import argparse
import codecs

import torch

from scratchlm import checkpoint
from scratchlm.cli.args import non_negative_float, positive_int, positive_probability
from scratchlm.errors import CheckpointError, ConfigError
from scratchlm.generation import stream
from scratchlm.memory import check_fits, sampling_bytes
from scratchlm.runtime import configure_threads, get_device


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="generate text from a trained checkpoint",
        description=(
            "Load a checkpoint written by 'train' and continue a prompt. Temperature 0 is greedy decoding; "
            "--top-k and --top-p restrict sampling to the most likely tokens. The same --seed gives the same text."
        ),
    )
    p.add_argument(
        "--ckpt", metavar="PATH", default="out", help="checkpoint file, or the folder holding ckpt.pt (default: out/)"
    )
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=positive_int, default=500, help="tokens to generate (default: 500)")
    p.add_argument(
        "--temperature", type=non_negative_float, default=1.0, help="softmax temperature; 0 = greedy (default: 1.0)"
    )
    p.add_argument("--top-k", type=positive_int, help="sample among the k most likely tokens only")
    p.add_argument(
        "--top-p", type=positive_probability, help="sample from the smallest set of tokens with this much probability"
    )
    p.add_argument("--seed", type=int, help="random seed, for reproducible samples")
    p.add_argument("--num-samples", type=positive_int, default=1, help="independent samples (default: 1)")
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole context for every token instead of using a KV cache (same text, slower)",
    )
    p.set_defaults(func=run)


MAX_NEW_TOKENS = 10_000_000  # about a day of sampling on a CPU; the ids alone would take 80 MB per sample


class TextStream:
    """Text of token ids that arrive one at a time. A BPE token can end in the middle of a UTF-8 character, so
    bytes are decoded incrementally: a character is printed once all of its bytes have come."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, ids: list[int]) -> str:
        if hasattr(self.tokenizer, "decode_bytes"):
            return self.decoder.decode(self.tokenizer.decode_bytes(ids))
        return self.tokenizer.decode(ids)

    def close(self) -> str:
        return self.decoder.decode(b"", final=True)


def run(args: argparse.Namespace) -> int:
    configure_threads()
    device = get_device(args.device)
    if args.max_new_tokens > MAX_NEW_TOKENS:
        raise ConfigError(
            f"--max-new-tokens {args.max_new_tokens:,} is more than this command allows ({MAX_NEW_TOKENS:,})"
        )
    if not checkpoint.resolve_path(args.ckpt).exists():
        raise CheckpointError(
            f"no checkpoint at {checkpoint.resolve_path(args.ckpt)}: train a model first "
            f"(python -m scratchlm train --out {args.ckpt}), or give --ckpt PATH"
        )
    model, tokenizer = checkpoint.load_model(args.ckpt, device=device)
    if not args.prompt:
        raise ConfigError("the prompt is empty: give at least one character to start from")
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ConfigError("the prompt encodes to no tokens")
    needed = sampling_bytes(model.config, args.num_samples, len(ids) + args.max_new_tokens)
    check_fits(needed, device, f"sampling {args.num_samples:,} sequences")
    prompts = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=device)
    tokens = stream(
        model,
        prompts,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        use_cache=not args.no_cache,
    )
    if args.num_samples == 1:  # print each token as it comes: text at once, and Ctrl-C keeps what was shown
        text = TextStream(tokenizer)
        print(text.push(ids), end="", flush=True)
        try:
            for token in tokens:
                print(text.push(token[0].tolist()), end="", flush=True)
        finally:
            print(text.close())
        return 0
    rows = [prompts.cpu()]
    try:
        for token in tokens:
            rows.append(token.cpu())
    finally:  # interrupted, the samples so far are printed all the same
        for i, row in enumerate(torch.cat(rows, dim=1).tolist()):
            if i:
                print("-" * 40)
            print(tokenizer.decode(row))
    return 0
