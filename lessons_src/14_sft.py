# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-id,-colab,-outputId,-executionInfo
#     notebook_metadata_filter: kernelspec,accelerator,colab.gpuType,-jupytext.text_representation.jupytext_version,-language_info.version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 14 · From a base model to an assistant: chat format, supervised fine-tuning, LoRA
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/14_sft.ipynb)
#
# Every model so far continues text. Ask one a question and it writes whatever text is likely to follow a
# question, which is rarely its answer. An assistant is a base model fine-tuned on conversations: it learns a
# format (whose turn it is, where a reply ends) and to answer in it. This lesson builds that second half of the
# pipeline, small enough for a CPU, on skills whose answers a program checks, so that every claim below is an
# accuracy with an error bar.
#
# **What you will build**
#
# 1. a task suite: four skills of graded difficulty (count a letter, reverse a word, sort its letters, add two
#    numbers), several phrasings each, train and test disjoint by construction;
# 2. a base model that has met the skills as plain text in its pretraining mix ("mid-training"), and a look at
#    why it still does not answer a question;
# 3. the chat template with special tokens, the loss mask, and the masked loss by hand;
# 4. batching by padding and by packing with a document mask (equal losses, different throughput);
# 5. supervised fine-tuning through the library's `train_step`: accuracy per skill with 95% intervals, base
#    few-shot against SFT zero-shot, and accuracy against SFT steps;
# 6. LoRA from scratch at several ranks against full fine-tuning: accuracy, trainable parameters, time, and what
#    each costs the base model's knowledge of its pretraining text;
# 7. a multi-turn chat, and an honest list of what this assistant cannot do.
#
# The library pieces live in `scratchlm.posttraining`; `python -m scratchlm sft` and `python -m scratchlm chat`
# are the same steps from the command line.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab, install the course library from its repository
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "scratchlm @ git+https://github.com/scratchlm/scratchlm"]
    )

import torch

from scratchlm.runtime import configure_threads, get_device, pick, run_mode

device = get_device()
configure_threads(max_threads=1)  # small models: a second thread gains little, and on shared cores it costs a lot
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %%
import itertools
import random
import time
from pathlib import Path

import matplotlib.pyplot as plt

from scratchlm import checkpoint
from scratchlm.attention import document_mask
from scratchlm.cli.chat import Chat
from scratchlm.data import load_text
from scratchlm.evaluate import bits_per_byte, token_bytes, token_nats
from scratchlm.posttraining import (
    END,
    SKILLS,
    TaskItem,
    accuracy_by_skill,
    add_chat_tokens,
    answer,
    complete,
    conversation_loss,
    grow_vocabulary,
    held_out_items,
    most_common_answer_accuracy,
    pack,
    packed_batch,
    pad_batch,
    parse,
    render,
    sft,
    task_accuracy,
    training_items,
)
from scratchlm.posttraining.recipe import RECIPES, base_corpus, lesson_models, pretrain_base
from scratchlm.training import Callback, make_optimizer, train_step

RECIPE = RECIPES[MODE]
ROOT = Path("out") / "lesson14" / MODE  # where lesson_models(MODE) keeps them: lesson 15 starts from these
N_TEST = pick(smoke=4, cpu=100, gpu=200)  # held-out items per skill for every accuracy below
print(f"checkpoints in {ROOT}/; {N_TEST} held-out items per skill")

# %% [markdown]
# ## 1. Skills a program can check
#
# Each skill draws operands, knows the one right answer and has three phrasings of the instruction. Every item
# has a key (its word; for a sum, the pair of numbers), and a hash of the key decides once and for all whether
# it is a test item: one key in five is held out of everything, fine-tuning data and pretraining text alike.

# %%
for name, skill in SKILLS.items():
    print(f"{name:8s} (difficulty {skill.difficulty})  " + " | ".join(skill.phrasings))
test_items = held_out_items(N_TEST)
train_stream = list(itertools.islice(training_items(seed=0), 5000))
test_keys = {(i.skill, SKILLS[i.skill].key(i.operands)) for i in test_items}
assert not test_keys & {(i.skill, SKILLS[i.skill].key(i.operands)) for i in train_stream}
for item in test_items[::N_TEST][:4]:
    print(f"  test: {item.question!r} -> {item.answer!r}")

# %% [markdown]
# ## 2. The base model, and why it does not answer
#
# The base model is a character-level GPT (RoPE, so packed conversations can be computed exactly, section 4)
# pretrained on Tiny Shakespeare with plain renderings of training items mixed in, half of the characters: the
# model meets the skills as text ("reverse stone = enots"), as today's pipelines mix task data into late
# pretraining. Characters rather than BPE because every skill is about characters. Its held-out text is the end
# of Tiny Shakespeare, untouched, so its bits per byte there measure what it knows of Shakespeare.

# %%
shakespeare = load_text("tinyshakespeare")
train_text, val_text = base_corpus(shakespeare)
print(train_text[4800:5200])

# %%
base_run = pretrain_base(RECIPE, ROOT / "base")
base_seconds = base_run.metrics[-1]["elapsed_s"]  # the run's own clock (a finished run found again trains nothing)
base_model, base_tokenizer = base_run.model, base_run.tokenizer
m = base_model.config
print(f"base: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} channels, context {m.block_size}, "
      f"{base_model.num_parameters():,} parameters, {RECIPE.base.max_iters} steps in {base_seconds:.0f} s; "
      f"held-out loss {base_run.metrics[-1]['val_loss']:.3f} nats per character")  # fmt: skip

# %% [markdown]
# Ask it a question as a user would, and it continues the text; give it the plain format it was trained on,
# and it completes the line.

# %%
newline = base_tokenizer.encode("\n")[0]
ids = base_tokenizer.encode
for prompt in ("Reverse stone.\n", "What is 12 + 30?\n", "reverse stone =", "12 + 30 ="):
    out = base_tokenizer.decode(complete(base_model, [ids(prompt)], stop_id=-1, max_new_tokens=40)[0])
    print(f"{prompt!r:22} -> {out!r}")

# %% [markdown]
# ## 3. The chat template, the loss mask and the masked loss by hand
#
# A conversation is a list of messages with roles, the format of OpenAI's API and of Hugging Face datasets.
# The template writes each message as its role's special token, its content, and `<|end|>`. The tokenizer gains
# the four special tokens after its vocabulary, and the model's embedding (and tied head) grows by four rows.
# The loss mask marks what the model must learn to produce: the assistant's content and the `<|end|>` after it,
# so it learns to stop.

# %%
tokenizer = add_chat_tokens(base_tokenizer)
item = test_items[N_TEST]  # a reverse item
messages = [{"role": "system", "content": "Be brief."}, *item.messages()]
by_hand, mask_by_hand = [], []
for message in messages:
    content = tokenizer.encode(message["content"])
    learned = int(message["role"] == "assistant")
    by_hand += [tokenizer.special_id(f"<|{message['role']}|>"), *content, tokenizer.special_id(END)]
    mask_by_hand += [0, *[learned] * len(content), learned]
rendered = render(messages, tokenizer)
assert (by_hand, mask_by_hand) == (rendered.ids, rendered.mask) and parse(rendered.ids, tokenizer) == messages
print(f"vocabulary {base_tokenizer.vocab_size} -> {tokenizer.vocab_size}: {tokenizer.special_tokens}")
print(tokenizer.decode(rendered.ids))
print("".join("^" if k else " " for k in rendered.mask), "<- learned")

# %% [markdown]
# The masked loss is the cross-entropy of each next token, averaged over the learned targets only: target t is
# token t + 1, counted when mask[t + 1] is 1. By hand on a grown copy of the base model, then as the library
# computes it (`conversation_loss`, and `GPT.forward` with the targets of the unlearned tokens set to -1).

# %%
grown = grow_vocabulary(base_model, tokenizer.vocab_size, seed=0)
x = torch.tensor([rendered.ids])
logits, _ = grown(x)
log_probs = logits[0].log_softmax(-1)
terms = [-log_probs[t, rendered.ids[t + 1]] for t in range(len(rendered.ids) - 1) if rendered.mask[t + 1]]
by_hand_loss = torch.stack(terms).mean()
x_pad, y_pad = pad_batch([rendered], pad_id=0)
torch.testing.assert_close(grown(x_pad, y_pad)[1], by_hand_loss)
assert abs(conversation_loss(grown, [rendered], pad_id=0) - by_hand_loss.item()) < 1e-5
print(f"masked loss {by_hand_loss:.3f} nats over {len(terms)} learned tokens (of {len(rendered.ids)})")

# %% [markdown]
# ## 4. Padding or packing
#
# Padding puts one conversation per row and fills the rows to the longest with ignored pads; the pads come after
# the real tokens, so causal attention never lets a real token see one. Packing lays conversations end to end in
# windows of the full context, and needs a **document mask** (block-diagonal causal attention) so that no
# conversation sees the one before it. With RoPE only offsets between positions matter, so a packed
# conversation's logits equal its logits alone: the losses agree (asserted), and without the mask they do not.

# %%
conversations = [render(i.messages(), tokenizer) for i in train_stream[:64]]
x_pad, y_pad = pad_batch(conversations, pad_id=0)
windows = pack(conversations, m.block_size)
x_pack, y_pack, documents = packed_batch(windows, m.block_size, pad_id=0)
with torch.no_grad():
    padded_loss = grown(x_pad, y_pad)[1]
    packed_loss = grown(x_pack, y_pack, attn_mask=document_mask(documents))[1]
    unmasked_loss = grown(x_pack, y_pack)[1]
torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)
real = sum(len(c.ids) for c in conversations)
print(f"64 conversations, {real} tokens: padded {tuple(x_pad.shape)} ({real / x_pad.numel():.0%} real tokens), "
      f"packed {tuple(x_pack.shape)} ({real / x_pack.numel():.0%} real)")  # fmt: skip
print(f"loss padded {padded_loss:.5f}, packed {packed_loss:.5f}, packed without the mask {unmasked_loss:.5f}")

# %% [markdown]
# Throughput: the same 64 conversations per step either way, timed by alternating training steps of the two
# layouts on two copies of the model (fastest of several steps each, one thread).


# %%
def step_seconds(batch, repeats):
    model = grow_vocabulary(base_model, tokenizer.vocab_size, seed=0).train()
    optimizer = make_optimizer(model, RECIPE.sft_train, torch.device("cpu"))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step(model, optimizer, batch, lr=1e-4)
        best = min(best, time.perf_counter() - t0)
    return best


repeats = pick(smoke=2, cpu=8, gpu=8)
timings = {"padded": [], "packed": []}
for _ in range(3):  # alternate, so a change in the machine's load hits both
    timings["padded"].append(step_seconds((x_pad, y_pad), repeats))
    timings["packed"].append(step_seconds((x_pack, y_pack, document_mask(documents)), repeats))
learned = int((y_pad != -1).sum())
for name, seconds in timings.items():
    print(
        f"{name}: {min(seconds) * 1e3:.0f} ms per step of 64 conversations, {learned / min(seconds):,.0f} learned tokens/s"
    )
print(f"packing is {min(timings['padded']) / min(timings['packed']):.2f}x the speed of padding here")  # fmt: skip

# %% [markdown]
# ## 5. Supervised fine-tuning
#
# `sft` grows the vocabulary, renders the training conversations (20,000 task conversations, random phrasings)
# and trains through `train`'s own loop and `train_step`, packed, with checkpoints in `ROOT/sft`. A callback
# measures held-out accuracy at every evaluation: the learning curve in accuracy, not only in loss.

# %%
curve_items = held_out_items(pick(smoke=2, cpu=40, gpu=100), seed=1)


class AccuracyCurve(Callback):
    def __init__(self):
        self.points = []

    def on_eval(self, run, record):
        scores = task_accuracy(run.model, run.tokenizer, curve_items)
        self.points.append((record["step"], {skill: a.rate for skill, a in scores.items()}))


curve = AccuracyCurve()
t0 = time.perf_counter()
full = sft(
    RECIPE.sft_config(
        ROOT / "base" / "ckpt.pt", out_dir=str(ROOT / "sft"), resume=(ROOT / "sft" / "ckpt.pt").is_file()
    ),
    callbacks=[curve],
)
full_seconds = time.perf_counter() - t0  # the callback's evaluations included
print(f"full fine-tuning: {full.trainable:,} trainable parameters, {len(full.step_losses)} steps, "
      f"held-out loss on answers {full.metrics[-1]['val_loss']:.3f} nats")  # fmt: skip
assert lesson_models(MODE).sft == ROOT / "sft" / "ckpt.pt"  # lesson 15's models: these, trained once, found again

# %% [markdown]
# Accuracy per skill, 95% Wilson intervals, on the fixed held-out items. First the floor: always giving a skill's
# most common answer (for `count`, whose answers are 0 to 3, about one in four; for the others one item at best);
# an accuracy means something only above it. Then the base model prompted few-shot (solved
# training examples in a question-and-answer layout, as many as its 96-character context holds beside the question:
# one to three), the base model in its own plain format (zero-shot, "reverse stone ="), and the fine-tuned model
# zero-shot in the chat format.


# %%
shots = {skill: [i for i in train_stream if i.skill == skill][:3] for skill in SKILLS}


def few_shot(item):
    """Solved training examples of the skill, as many as fit the context with room for the answer, then the item."""
    text = f"Q: {item.question}\nA:"
    for shot in shots[item.skill]:
        longer = f"Q: {shot.question}\nA: {shot.answer}\n" + text
        if len(ids(longer)) > m.block_size - 16:
            break
        text = longer
    return ids(text)


def plain(item):
    return ids(SKILLS[item.skill].raw.format(*item.operands, "").rstrip(" ") + " ")


results = {
    "most common answer": most_common_answer_accuracy(test_items),  # the floor: what a constant reply scores
    "base, few-shot Q/A": task_accuracy(base_model, base_tokenizer, test_items, prompt=few_shot, stop=newline),
    "base, plain format": task_accuracy(base_model, base_tokenizer, test_items, prompt=plain, stop=newline),
    "SFT (full), zero-shot chat": task_accuracy(full.model, full.tokenizer, test_items),
}
print(f"{'':28s}" + "".join(f"{s:>28s}" for s in SKILLS))
for name, scores in results.items():
    print(f"{name:28s}" + "".join(f"{scores[s]!s:>28s}" for s in SKILLS))


def plot_accuracies(ax, results):
    width = 0.8 / len(results)
    for j, (name, scores) in enumerate(results.items()):
        rates = [scores[s].rate for s in SKILLS]
        errors = [[max(0.0, scores[s].rate - scores[s].interval[0]) for s in SKILLS],
                  [max(0.0, scores[s].interval[1] - scores[s].rate) for s in SKILLS]]  # fmt: skip
        ax.bar([i + j * width for i in range(len(SKILLS))], rates, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(SKILLS))], list(SKILLS))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"held-out accuracy ({N_TEST} items per skill, 95% CI)")
    ax.legend(fontsize=8)


fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
plot_accuracies(left, results)
for skill in SKILLS:
    right.plot([s for s, _ in curve.points], [p[skill] for _, p in curve.points], "o-", label=skill)
right.set_xlabel("SFT step")
right.set_ylabel(f"held-out accuracy ({len(curve_items) // len(SKILLS)} items per skill)")
right.legend()
plt.show()

# %% [markdown]
# What the table says, interval by interval (100 held-out items per skill):
#
# - **Few-shot prompting gets nothing** from this base model: 0 of 100 on every skill. It never saw a
#   question-and-answer layout, and at 0.45M parameters it does not pick one up from one to three examples in its
#   context; it continues with lines of its own, as in section 2.
# - **In its own plain format the base model has two skills**: reversing (100%) and sorting (65%, 55–74%).
#   **Counting is at the floor** (32%, 24–42%, against 30% for always answering the most common count) and
#   **addition at zero**: it has seen thousands of sums and counts and learned neither, at this size and budget.
# - **Fine-tuning moves the skills it has into the chat format and no further**: zero-shot, from an instruction
#   in any of three phrasings, reversing stays at 100% and sorting reaches 83% (74–89%), above the plain format's
#   65% with the intervals just touching; counting stays at the floor (23%, 16–32%) and addition at zero. SFT
#   taught the format and the phrasings, not a skill the base model lacked.
# - (An earlier version of this suite drew the counted letter from the word, so 69% of the answers were "1":
#   every model scored exactly 69% by answering "1". The floor row is there so that cannot pass unseen again.)

# %% [markdown]
# ## 6. LoRA: a low-rank change to each matrix
#
# LoRA freezes every weight W and learns W + (alpha / r) B A with B (out, r) starting at zero and A (r, in)
# random, on every matrix of every block; the chat tokens' four embedding rows train too (they are new). After
# training, B A is merged into W: the saved model is an ordinary GPT. The test suite checks the merge (equal
# logits) and that each matrix moved by a matrix of rank at most r. Here, the same data and steps at three ranks.

# %%
runs = {"full": (full, full_seconds)}
for rank in pick(smoke=(2,), cpu=(1, 4, 16), gpu=(4, 16, 64)):
    folder = ROOT / f"lora-{rank}"
    t0 = time.perf_counter()
    result = sft(RECIPE.sft_config(ROOT / "base" / "ckpt.pt", out_dir=str(folder), lora_rank=rank,
                                   learning_rate=3 * RECIPE.sft_train.learning_rate,
                                   resume=(folder / "ckpt.pt").is_file()))  # fmt: skip
    runs[f"LoRA r={rank}"] = (result, time.perf_counter() - t0)

scored_text = val_text[: pick(smoke=2000, cpu=60000, gpu=111540)]
val_ids = torch.tensor(base_tokenizer.encode(scored_text))
n_bytes = token_bytes(base_tokenizer)


def text_bpb(model):
    nats, _ = token_nats(model, val_ids)
    return bits_per_byte(nats, val_ids, n_bytes)


base_bpb = text_bpb(base_model)
print(f"{'':12s}{'trainable':>12s}{'time s':>8s}{'Shakespeare bpb':>17s}" + "".join(f"{s:>28s}" for s in SKILLS))
print(f"{'base':12s}{'':>12s}{'':>8s}{base_bpb:>17.3f}")
table = {}
for name, (result, seconds) in runs.items():
    if name == "full":
        scores = results["SFT (full), zero-shot chat"]
    else:
        scores = task_accuracy(result.model, result.tokenizer, test_items)
    table[name] = scores
    print(f"{name:12s}{result.trainable:>12,}{seconds:>8.0f}{text_bpb(result.model):>17.3f}"
          + "".join(f"{scores[s]!s:>28s}" for s in SKILLS))  # fmt: skip

# %%
fig, ax = plt.subplots(figsize=(10, 4))
plot_accuracies(ax, table)
ax.set_title("full fine-tuning against LoRA at several ranks (same data, same steps)")
plt.show()

# %% [markdown]
# LoRA at rank 1 trains 6,528 parameters (1.4% of full fine-tuning's 455,232) and reaches 45% on reversing and
# 40% on sorting; rank 4 (24,960) 96% and 68%; rank 16 (98,688) 100% and 78%, within the intervals of full
# fine-tuning's 100% and 83%. Counting and addition stay at the floor for every variant. The times in the table
# are wall times on a machine shared with other jobs, not a speed comparison.
#
# The column to look at twice is **Shakespeare bits per byte**. The base model scores 2.64 on the held-out end of
# Tiny Shakespeare; after 600 steps of fine-tuning on task conversations alone, full fine-tuning scores 7.80 —
# worse than a uniform guess over its 80 tokens (6.3 bits) — and LoRA 4.69, 5.61 and 6.93 at ranks 1, 4 and 16.
# Fine-tuning on a narrow distribution *forgets* the broad one, and the more the adapter can change, the more it
# forgets: LoRA learns less and forgets less (Biderman et al., 2024, found the same at scale). Real post-training
# pipelines mix pretraining-like data into the fine-tuning set for this reason (exercise 5).

# %% [markdown]
# ## 7. A conversation
#
# The `chat` command's own conversation object (`scratchlm.cli.chat.Chat`): the whole conversation is the
# prompt of each reply, and when it outgrows the context the oldest exchanges are dropped, with a note.

# %%
model, chat_tokenizer = checkpoint.load_model(ROOT / "sft")
conversation = Chat(model, chat_tokenizer, system=None, temperature=0.0, max_new_tokens=16, seed=None)
for text in ("Reverse water.", "How many e are in cheese?", "Sort the letters of planet.", "What is 218 + 407?",
             "Write hello backwards.", "Who are you?"):  # fmt: skip
    print(f"you> {text}")
    conversation.reply(text)

# %% [markdown]
# Right on the two skills it has (`retaw`, `aelnpt`), wrong on the two it lacks (a count of `cwrs`, a sum of
# `a67`), and a wrong `aleih` for `hello`, a reversal it gets right on held-out words of the training phrasings:
# by then the 96-token context had dropped the earlier exchanges, and the reply comes after a conversation unlike
# any it was trained on (every training conversation is a single exchange). "Who are you?" is answered like a
# task, with letters: the model knows nothing but its four skills.

# %% [markdown]
# ## 8. What it cannot do
#
# Measured where it can be: words longer than any it was trained on (seven and eight letters), and a phrasing
# it never saw.

# %%
rng = random.Random(0)
long_words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.choice((7, 8))))
              for _ in range(N_TEST)]  # fmt: skip
long_items = [SKILLS["reverse"].item((w,)) for w in long_words]
new_phrasing = [TaskItem("reverse", i.operands, f"Please turn {i.operands[0]} around.", i.answer)
                for i in test_items if i.skill == "reverse"]  # fmt: skip
for name, items in (("reverse, 7-8 letters", long_items), ("reverse, unseen phrasing", new_phrasing)):
    replies = answer(full.model, full.tokenizer, items)
    print(
        f"{name:26s} {accuracy_by_skill(items, [i.verify(r) for i, r in zip(items, replies, strict=True)])['reverse']}"
    )

# %% [markdown]
# Both at 0 of 100: words of seven or eight letters (training words have three to six) and a phrasing never seen
# in fine-tuning ("Please turn ... around."). What fine-tuning taught is narrow: these sentences, these lengths.
#
# ## Summary
#
# - A base model continues text: asked a question it writes more text, and few-shot examples in a Q/A layout got
#   it 0 of 100 on every skill. The skills it has are reachable only through the format it learned them in: in
#   its plain format it reverses words (100%) and sorts letters (65%, 95% interval 55–74%); it cannot count a
#   letter (32%, at the 30% floor of always giving the most common answer) or add (0%).
# - Supervised fine-tuning is next-token prediction on conversations with a loss mask: only the assistant's
#   tokens (and the `<|end|>` that closes them) count. The chat template is four special tokens, added after the
#   vocabulary with four new embedding rows.
# - Packing with a document mask gives exactly the losses of padding (RoPE: only offsets matter) with fewer
#   wasted tokens: 86% real tokens against 53%, and 1.46x the learned tokens per second here.
# - After 600 steps of SFT the model answers instructions zero-shot: reversing 100% (96–100%), sorting 83%
#   (74–89%), counting 23% (at the floor) and adding 0%. SFT taught the format and the phrasings, not a skill
#   the base lacked, and nothing beyond them: 0% on longer words and on an unseen phrasing.
# - LoRA at rank 16 (98,688 trainable parameters, a fifth of the model) matches full fine-tuning within the
#   intervals; rank 1 (6,528) gets about half. Fine-tuning on tasks alone wrecks the model's Shakespeare
#   (2.64 → 7.80 bits per byte with full fine-tuning, 4.69 with LoRA rank 1): narrow data forgets broad data.
# - Every accuracy needs its floor: an earlier version of the counting skill let "always answer 1" score 69%.
# - `lesson_models(MODE)` rebuilds (or finds) this lesson's base and SFT checkpoints; lesson 15 starts from them.
#
# ## Exercises
#
# 1. Fine-tune without the loss mask (learn the user's tokens too). What happens to accuracy and to the held-out
#    loss on answers?
# 2. Hold out one phrasing of each skill from fine-tuning and measure accuracy on it: does SFT teach the skill or
#    the sentence?
# 3. Train LoRA on the attention matrices only (`add_lora(..., targets=("c_attn",))`): how much of the accuracy
#    does it keep?
# 4. Lower the skill share of the base corpus to 0.1: does SFT still reach the same accuracy, and what does that
#    say about where the skill comes from?
# 5. Mix Shakespeare windows into the fine-tuning batches (say one row in four, with every token learned). How
#    much of the 2.64 bits per byte does that keep, and what does it cost in accuracy?
