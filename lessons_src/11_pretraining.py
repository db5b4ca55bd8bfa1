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
# # 11 · Small-scale pretraining: shards, a resumable loader, mixed precision and DDP
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/11_pretraining.ipynb)
#
# Until now every lesson read Tiny Shakespeare, 1.1 MB, encoded it at start-up and kept its ids in memory. A
# pretraining run does none of that: its corpus is tokenized **once**, by many processes, into files of token
# ids that every later run maps into memory; its batches come from a loader that can say exactly where it is,
# so a run interrupted after a week continues at the same token; its steps are bigger than memory allows, so
# gradients are accumulated over micro-batches; it computes in bfloat16 where the hardware does; and it runs
# on several processes at once with PyTorch's `DistributedDataParallel` (DDP), launched by `torchrun`. This
# lesson builds each piece in the open, checks it against the library (`scratchlm.pretraining`), and then
# pretrains a BPE GPT on a multi-megabyte corpus that every Python installation already has.
#
# **What you will build**
#
# 1. the corpus: Python's standard library as documents, and a BPE tokenizer with an end-of-text token;
# 2. token shards and a memory map, measured against reading the text (start-up time, memory);
# 3. parallel tokenization, 1 against 2 worker processes;
# 4. a loader whose windows are disjoint across ranks and whose state resumes at the exact token;
# 5. gradient accumulation, shown equal to the big batch;
# 6. bfloat16 autocast against float32: the loss difference and the speed;
# 7. what DDP does (an all-reduce of gradients), and a 2-process run launched from this notebook;
# 8. a real pretraining run with loss and bits-per-byte curves against tokens seen, and samples along the way.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab, install the course library from its repository
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "scratchlm @ git+https://github.com/scratchlm/scratchlm"]
    )

import torch

from scratchlm.runtime import configure_threads, get_device, pick, run_mode, set_seed

device = get_device()
configure_threads(max_threads=1)  # small models: a second thread gains little, and on shared cores it costs a lot
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
SEED = 1337
set_seed(SEED)
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %%
import json
import os
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

WORK = Path("runs/lesson11")  # everything this lesson writes
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)

# %% [markdown]
# ## 1 · A corpus that is already on your disk
#
# Pretraining wants text measured in megabytes at least, and this course runs offline. One multi-megabyte
# text is on every machine that runs Python: the **standard library's source**, about 12 MB in some 730 files
# (tests left out). It is real text written by many people over thirty years: code, and also docstrings,
# comments and error messages in English; it has long-range structure (indentation, brackets, names defined
# far from where they are used). It is code-flavoured, so its losses are not comparable with prose corpora, and
# it changes with the Python version (the shard index records its hash). With internet and `datasets`
# installed, `hf:roneneldan/TinyStories` is a prose alternative; nothing here needs it.
#
# Each file is one **document**. In smoke mode (CI) the lesson uses Tiny Shakespeare, one document per speech.

# %%
from scratchlm.pretraining.corpora import fingerprint, open_corpus

CORPUS = pick(smoke="tinyshakespeare", cpu="python-stdlib", gpu="python-stdlib")
corpus = open_corpus(CORPUS)
_, n_docs, n_bytes = fingerprint(corpus.documents())
print(f"{corpus.description}: {n_docs:,} documents, {n_bytes / 1e6:.1f} MB")
first = next(corpus.documents())
print(first[:300])

# %% [markdown]
# A BPE tokenizer (lesson 05), trained on the first megabyte of the corpus, with one special token:
# `<|endoftext|>`. Every document will be preceded by it, so the model learns where documents start, and a
# sample started from it begins a document. A small vocabulary keeps the embedding cheap on a CPU.

# %%
from scratchlm.tokenizers import BPETokenizer

VOCAB = pick(smoke=320, cpu=2048, gpu=4096)
sample_text, size = [], 0
for doc in corpus.documents():
    sample_text.append(doc)
    size += len(doc)
    if size > pick(smoke=100_000, cpu=1_000_000, gpu=2_000_000):
        break
t0 = time.perf_counter()
tokenizer = BPETokenizer.train("\n".join(sample_text), VOCAB, special_tokens=["<|endoftext|>"], progress=False)
EOT = tokenizer.special_tokens["<|endoftext|>"]
print(f"BPE with {tokenizer.vocab_size} ids trained in {time.perf_counter() - t0:.1f} s; <|endoftext|> = {EOT}")
print(tokenizer.encode_ordinary("def __init__(self, *args):"))

# %% [markdown]
# ## 2 · Shards and a memory map
#
# The way of every earlier lesson: read the text, encode it, keep the ids as an int64 tensor. Let us time it
# on the whole corpus and look at the memory it takes.

# %%
t0 = time.perf_counter()
ids = []
for doc in corpus.documents():
    ids.append(EOT)
    ids.extend(tokenizer.encode_ordinary(doc))
in_memory = torch.tensor(ids, dtype=torch.long)
encode_s = time.perf_counter() - t0
del ids
print(
    f"read + encode: {encode_s:.1f} s for {len(in_memory):,} tokens "
    f"({n_bytes / len(in_memory):.2f} bytes of text per token); "
    f"held as int64: {in_memory.numel() * 8 / 1e6:.1f} MB"
)

# %% [markdown]
# The pretraining way: write the ids once to a file, 2 bytes per id (a vocabulary of at most 65,536 fits in
# `uint16`), and map the file into memory with `np.memmap`. Mapping reads nothing: the operating system loads
# the pages a batch touches when it touches them, and processes that map the same file share those pages. Here
# by hand, one file:

# %%
raw = WORK / "by_hand.bin"
in_memory.numpy().astype(np.uint16).tofile(raw)
t0 = time.perf_counter()
mapped = np.memmap(raw, dtype=np.uint16, mode="r")
window = torch.from_numpy(mapped[1000 : 1000 + 65].astype(np.int64))
map_s = time.perf_counter() - t0
assert torch.equal(window, in_memory[1000:1065])
print(f"file: {raw.stat().st_size / 1e6:.1f} MB; map + read one window: {1000 * map_s:.2f} ms")


# %% [markdown]
# How much of the file is in memory after a few batches? Linux reports a process's resident memory in
# `/proc/self/status`; mapped pages count only once touched. (Elsewhere the cell says so and moves on.)


# %%
def resident_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


before = resident_mb()
rng = np.random.default_rng(0)
for start in rng.integers(0, len(mapped) - 65, size=12 * 20):  # 20 batches of 12 windows
    _ = mapped[start : start + 65].sum()
after = resident_mb()
if before is not None:
    print(
        f"resident memory grew by {after - before:.2f} MB after 20 random batches (the file is {raw.stat().st_size / 1e6:.1f} MB)"
    )
else:
    print("no /proc/self/status here: resident memory not measured")

# %% [markdown]
# On the run recorded here, 20 batches (240 windows) made 6.6 MB of the 8.8 MB file resident: the kernel maps
# the pages around each one touched (fault-around) and reads ahead, so on a file this small most of it ends up
# mapped. The point is whose memory it is: the operating system's page cache, shared by every process that maps
# the file and given back under pressure, not a private 35 MB int64 copy in each process, as the tensor above is
# (8 bytes a token against 2, times the number of processes of a DDP run).
#
# The library's `prepare` does this for real: fixed-size shards (so no single file grows without bound), a
# train/val split **by document** (a hash of the document's position decides; no document is cut in two), the
# end-of-text token before each document, a sha256 per shard, and `index.json` saying what every file holds.
# It runs in worker processes; the next section measures them. Here one worker, and a check that its training
# shard holds what we would have written by hand.

# %%
from scratchlm.pretraining.shards import ShardIndex, goes_to_val, prepare

tokenizer_path = WORK / "bpe.txt"
tokenizer.save(tokenizer_path)
SHARD_TOKENS = pick(smoke=100_000, cpu=2_000_000, gpu=2_000_000)
index, stats1 = prepare(
    CORPUS, str(tokenizer_path), WORK / "shards-1", shard_tokens=SHARD_TOKENS, workers=1, progress=False
)
print(json.dumps({k: index.index[k] for k in ("dtype", "separator", "settings")}))
for split in ("train", "val"):
    s = index.index["splits"][split]
    print(f"{split}: {s['documents']:,} documents, {s['tokens']:,} tokens in {len(s['shards'])} shard(s)")

by_hand = []
for position, doc in enumerate(corpus.documents()):
    if not goes_to_val(position, 0, 0.02):
        by_hand += [EOT, *tokenizer.encode_ordinary(doc)]
assert index.read("train").tolist() == by_hand

# %% [markdown]
# Start-up of a training run, both ways: reading and encoding the text (timed above), against opening the
# index (checking every shard's size; `verify=False` skips the hashes, which a run checks once at start) and
# reading a first batch from the memory maps.

# %%
from scratchlm.pretraining.loader import ShardLoader

t0 = time.perf_counter()
opened = ShardIndex.open(WORK / "shards-1", verify=False)
x, y = ShardLoader(opened, "train", 64, 12, seed=SEED).next_batch()
open_s = time.perf_counter() - t0
t0 = time.perf_counter()
ShardIndex.open(WORK / "shards-1", verify=True)
verify_s = time.perf_counter() - t0
print(f"read + encode the text: {encode_s:.2f} s; open the shards + first batch: {1000 * open_s:.1f} ms "
      f"({encode_s / open_s:,.0f}x faster); checking every sha256 as well: {1000 * verify_s:.0f} ms")  # fmt: skip

# %% [markdown]
# Here: 5.5 s to read and encode 12 MB against 2.2 ms to open the shards and read a batch, with the sha256 check
# adding 6 ms. The encoding cost grows with the corpus; opening does not (it maps, it does not read).
#
# ## 3 · Tokenizing in parallel
#
# Encoding is independent per document, so `prepare` sends batches of documents (about 1 MB each) to worker
# processes and writes their results **in order**: the shards are the same whatever the number of workers.
# Throughput in MB of text per second with 1 and 2 workers (this machine may have only 2 cores; on a bigger
# one, try more):

# %%
WORKERS = pick(smoke=[1, 2], cpu=[1, 2], gpu=[1, 2, os.cpu_count() or 2])
rates = {1: stats1.mb_per_s}
for w in WORKERS[1:]:
    other, stats = prepare(
        CORPUS, str(tokenizer_path), WORK / f"shards-{w}", shard_tokens=SHARD_TOKENS, workers=w, progress=False
    )
    assert other.index["splits"] == index.index["splits"]  # the same files, byte for byte (sha256)
    rates[w] = stats.mb_per_s
for w, rate in rates.items():
    print(f"{w} worker(s): {rate:.2f} MB/s ({rate / rates[1]:.2f}x)")
_, again = prepare(CORPUS, str(tokenizer_path), WORK / "shards-1", shard_tokens=SHARD_TOKENS, workers=1, progress=False)
assert again.up_to_date  # the same input again: nothing to do

# %% [markdown]
# With one worker the encoding runs in this process; with two, two processes encode while this one writes. In
# the run recorded here two workers were *slower* (0.72x): this notebook was executed on a 2-core machine with
# one core reserved for it and the other busy with another job, so the two workers and the main process shared
# about one core, and paid for pickling their results back to it besides. Parallelism pays only with free cores:
# `bench/prepare_throughput.py`, run holding both cores, measured 4.93 MB/s with one worker and 9.23 with two
# (1.87x) on the standard library in GPT-2's vocabulary.
#
# ## 4 · A loader for many processes, that knows where it is
#
# The loader cuts each split into windows of `block_size + 1` tokens starting every `block_size` tokens, and
# each epoch visits them all once in a random order drawn from (seed, epoch). With R ranks, a step's global
# batch is the next `batch × R` windows of that order, and rank r takes every R-th of them starting at r. Let
# us check the two properties a DDP run needs: the ranks never read the same window, and together they read
# what a single process with an R-times-bigger batch reads.

# %%
single = ShardLoader(index, "train", 64, 8, seed=SEED)
ranks = [ShardLoader(index, "train", 64, 4, rank=r, world_size=2, seed=SEED) for r in range(2)]
for _ in range(100):
    whole = single.window_ids()
    r0, r1 = (loader.window_ids() for loader in ranks)
    assert not set(r0) & set(r1) and sorted([*r0, *r1]) == sorted(whole)
print("100 steps: the 2 ranks' windows are disjoint and together equal the single process's batch")

# %% [markdown]
# Its state is two integers (the epoch, and the windows consumed by all ranks together) plus what identifies
# the windows, so a checkpoint of a 2-process run can continue in one process, or eight:

# %%
state = single.state_dict()
print(state)
expected = single.next_batch()
resumed = ShardLoader(index, "train", 64, 8, seed=SEED)
resumed.load_state_dict(state)
got = resumed.next_batch()
assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])

# %% [markdown]
# What does reading cost? A batch is a dozen slices of a memory map; a training step of the course's `cpu`
# preset model takes tens of milliseconds. (`bench/pretrain_loader.py` measures the share during training.)

# %%
loader = ShardLoader(index, "train", 64, 12, seed=SEED)
t0 = time.perf_counter()
for _ in range(500):
    loader.next_batch()
print(f"{1e6 * (time.perf_counter() - t0) / 500:.0f} µs per batch of 12 x 65 tokens")

# %% [markdown]
# ## 5 · Gradient accumulation is the big batch
#
# A step of B sequences computes the gradient of the mean loss over B. Split B into k micro-batches, backward
# each loss divided by k, and the gradients add up to the same thing, with the memory of one micro-batch. First
# by hand, then with the library's `train_step`, which takes a list of micro-batches.

# %%
from scratchlm.model import GPT, GPTConfig
from scratchlm.training import TrainConfig, make_optimizer, train_step

small = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=index.vocab_size)
torch.manual_seed(0)
model = GPT(small)
x, y = ShardLoader(index, "train", 64, 16, seed=1).next_batch()

model.zero_grad()
_, loss = model(x, y)
loss.backward()
big = {n: p.grad.clone() for n, p in model.named_parameters()}

model.zero_grad()
for xs, ys in zip(x.chunk(4), y.chunk(4), strict=True):  # 4 micro-batches of 4
    _, loss = model(xs, ys)
    (loss / 4).backward()
for n, p in model.named_parameters():
    torch.testing.assert_close(p.grad, big[n], rtol=1e-4, atol=1e-6)

optimizer = make_optimizer(model, TrainConfig(), torch.device("cpu"))
train_step(model, optimizer, list(zip(x.chunk(4), y.chunk(4), strict=True)), lr=0.0)  # lr 0: gradients only
for n, p in model.named_parameters():
    torch.testing.assert_close(p.grad, big[n], rtol=1e-4, atol=1e-6)
print("accumulated gradients of 4 x 4 sequences == the gradient of 16")

# %% [markdown]
# `pretrain` takes the step's size in tokens (`--batch-tokens`) and works out the micro-batches per rank:
# batch_tokens / (batch × block × ranks).

# %%
from scratchlm.pretraining.config import PretrainConfig

example = PretrainConfig(train=TrainConfig().replace(batch_size=12, block_size=64), batch_tokens=12 * 64 * 8)
print({ranks: example.accumulation(ranks) for ranks in (1, 2, 4, 8)})

# %% [markdown]
# ## 6 · bfloat16 against float32
#
# bfloat16 keeps float32's 8 exponent bits (the same range, so no loss scaling) and only 7 of its 23 mantissa
# bits. Under `torch.autocast`, matrix products run in bfloat16 while reductions such as the loss and the
# softmax stay in float32. On GPUs with bfloat16 tensor cores this is several times faster; on a CPU it
# depends on the instructions the chip has. The loss of the same model on the same batch, and the time of a
# training step, both ways:

# %%
from scratchlm.training import autocast_for

bf16 = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
torch.manual_seed(0)
model = GPT(small).to(device)
xb, yb = x.to(device), y.to(device)
with torch.no_grad():
    _, loss32 = model(xb, yb)
    with bf16:
        _, loss16 = model(xb, yb)
print(f"loss float32 {loss32.item():.5f}, bfloat16 autocast {loss16.item():.5f}, "
      f"difference {abs(loss32.item() - loss16.item()):.5f}")  # fmt: skip


def step_ms(autocast, steps: int = pick(smoke=3, cpu=20, gpu=50)) -> float:
    torch.manual_seed(0)
    m = GPT(small).to(device)
    opt = make_optimizer(m, TrainConfig(), device)
    train_step(m, opt, (xb, yb), lr=1e-3, autocast=autocast)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(m, opt, (xb, yb), lr=1e-3, autocast=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / steps


ms32, ms16 = step_ms(autocast_for(device, "float32")), step_ms(bf16)
print(f"training step: float32 {ms32:.1f} ms, bfloat16 autocast {ms16:.1f} ms ({ms32 / ms16:.2f}x)")

# %% [markdown]
# Here the losses differ by 1e-5: bfloat16 rounds each product's inputs to about 3 significant digits, and the
# errors mostly average out over the sums (and the loss itself is computed in float32). Over a whole run the
# differences compound like any rounding, without changing where the run goes. The speed is another matter: on
# this CPU the bfloat16 step took 48.0 ms against 29.8 ms in float32 (0.62x). The course's float32 path runs its
# matrix products through oneDNN kernels chosen for this chip (lesson 04), while autocast adds casts around every
# product of a model this small. On GPUs with bfloat16 tensor cores the balance reverses, which is why `pretrain`'s
# `--dtype auto` takes bfloat16 on CUDA GPUs that support it and float32 elsewhere.
#
# ## 7 · What DDP does
#
# Data parallelism: every process holds the whole model and the same optimizer state, reads its own part of
# the batch, and computes gradients on it. Before the optimizer step, the processes **all-reduce** their
# gradients: each ends up with the sum, which DDP divides by the number of processes, so every process has
# the gradient of the whole batch and takes the same step; the weights stay identical without ever being sent.
# DDP starts the all-reduce of a bucket of gradients as soon as backward has produced it, overlapping
# communication with the rest of backward. With gradient accumulation, only the last micro-batch's backward
# should communicate: the others run inside `model.no_sync()`.
#
# The arithmetic of one all-reduce, on two "ranks" in this process:

# %%
grads = [torch.randn(5) for _ in range(2)]  # each rank's gradient of its own half-batch mean loss
all_reduced = sum(grads) / 2  # what every rank holds after the all-reduce (sum) and DDP's division
print(all_reduced)

# %% [markdown]
# Since each rank's loss is the mean over its half of the batch, the average of the two gradients is the
# gradient of the mean over the whole batch: exactly the single-process step of section 5. The real thing
# runs in separate processes that `torchrun` starts: it sets `RANK`, `WORLD_SIZE` and the address where they
# meet; `pretrain` sees them, joins a process group (gloo on CPU, NCCL on GPUs) and wraps the model in DDP.
# Two processes with 4 sequences each, then one process with 8, both 10 steps:

# %%
from scratchlm import checkpoint

DEMO = ["--data", str(WORK / "shards-1"), "--no-bias", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
        "--block-size", "32", "--max-iters", "10", "--eval-interval", "5", "--eval-iters", "2", "--lr", "3e-3",
        "--warmup-iters", "2", "--samples", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
env = dict(os.environ, SCRATCHLM_THREADS="1", OMP_NUM_THREADS="1")
torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
runs = {
    "ddp": [*torchrun, "-m", "scratchlm", "pretrain", *DEMO, "--batch-size", "4", "--out", str(WORK / "ddp")],
    "one": [sys.executable, "-m", "scratchlm", "pretrain", *DEMO, "--batch-size", "8", "--out", str(WORK / "one")],
}
for name, command in runs.items():
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"--- {name} ({time.perf_counter() - t0:.1f} s)\n" + done.stdout.strip())

# %%
a, b = checkpoint.load(WORK / "ddp"), checkpoint.load(WORK / "one")
loss_gap = max(abs(p - q) for p, q in zip(a.extra["step_losses"], b.extra["step_losses"], strict=True))
weight_gap = max((a.model_state[k] - b.model_state[k]).abs().max().item() for k in a.model_state)
print(f"10 steps: largest loss difference {loss_gap:.1e}, largest weight difference {weight_gap:.1e}")
assert loss_gap < 1e-4 and weight_gap < 1e-4

# %% [markdown]
# The same steps, up to the order of floating-point additions: 9.5e-7 apart in loss and 5.0e-7 in weights after
# 10 steps. (The 2-process run is slower here, 19,036 against 27,152 tokens/s: on 2 cores, one of them busy
# with other work, two processes compete for the CPU and exchange gradients besides; `bench/ddp.py` measures the
# communication share.) (The model has no biases here: the key
# projection's bias has a gradient of exactly zero in exact arithmetic, so in floating point it is pure rounding
# noise, which Adam normalises into full-size, order-dependent updates; the test suite notes the same.) The
# checkpoint holds the loader's global position, so `--resume` continues the 2-process run in any number of
# processes. Several GPUs on one machine: `torchrun --standalone --nproc_per_node=8 -m scratchlm pretrain ...`;
# several machines: the README shows the rendezvous flags.
#
# ## 8 · A real pretraining run
#
# A BPE GPT on the whole corpus. On a CPU it is a 4-layer model of 96 channels (about 0.6M parameters with
# the vocabulary) trained for a few minutes; on a GPU, a 6-layer model of 384 channels (about 12M) with
# compile and bfloat16. Warmup, then cosine decay; an evaluation every few hundred steps records the val loss,
# bits per byte, tokens/s, MFU and a sample.

# %%
from scratchlm.pretraining.loop import pretrain
from scratchlm.training import preset

run_config = PretrainConfig(
    train=preset(
        "cpu",
        data=str(WORK / "shards-1"),
        out_dir=str(WORK / "pretrain"),
        n_layer=pick(smoke=2, cpu=4, gpu=6),
        n_head=pick(smoke=2, cpu=4, gpu=6),
        n_embd=pick(smoke=32, cpu=96, gpu=384),
        block_size=pick(smoke=32, cpu=128, gpu=256),
        batch_size=pick(smoke=8, cpu=16, gpu=32),
        max_iters=pick(smoke=30, cpu=1500, gpu=5000),
        learning_rate=pick(smoke=3e-3, cpu=4e-3, gpu=1e-3),
        min_lr=pick(smoke=3e-4, cpu=2e-4, gpu=1e-4),
        warmup_iters=pick(smoke=5, cpu=100, gpu=200),
        eval_interval=pick(smoke=10, cpu=150, gpu=500),
        eval_iters=pick(smoke=2, cpu=20, gpu=50),
        compile=device.type == "cuda",
        device=device.type,
    ),
    batch_tokens=pick(smoke=None, cpu=None, gpu=32 * 256 * 4),
    samples=1,
    sample_tokens=pick(smoke=16, cpu=64, gpu=96),
)
t0 = time.perf_counter()
result = pretrain(run_config, device=device)
minutes = (time.perf_counter() - t0) / 60
last = result.metrics[-1]
print(f"{result.model.num_parameters() / 1e6:.2f}M parameters, {last['tokens']:,} tokens in {minutes:.1f} min: "
      f"val loss {last['val_loss']:.3f}, {last['val_bpb']:.3f} bits per byte, {last['tokens_per_s']:,.0f} tokens/s")  # fmt: skip

# %%
records = result.metrics
tokens = [r["tokens"] for r in records]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
steps_per_record = run_config.train.eval_interval
train_curve = [(r["tokens"], r["train_loss"]) for r in records if r["train_loss"] is not None]
ax1.plot(*zip(*train_curve, strict=True), "o-", label=f"train (mean of the last {steps_per_record} steps)")
ax1.plot(tokens, [r["val_loss"] for r in records], "s-", label="validation")
ax1.set(xlabel="tokens seen", ylabel="loss (nats per token)", title="loss")
ax1.legend()
ax2.plot(tokens, [r["val_bpb"] for r in records], "s-", color="C1")
ax2.set(xlabel="tokens seen", ylabel="bits per byte", title="validation bits per byte")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# The recorded CPU run: 0.66M parameters, 1500 steps of 2,048 tokens (3.07M tokens, 0.7 epoch of the
# training split) in 3.7 min on one thread, 13,000–16,500 tokens/s and an MFU of about 37% of the measured
# matrix-product rate; val loss 7.63 → 2.485 nats per token, **1.313 bits per byte**. The curve is still falling
# at the end: the run is limited by compute, not by data.
#
# Bits per byte divides the loss (converted to bits) by the bytes of text per token, so it does not depend on
# the tokenizer: a character model of lesson 04 and this BPE model can be compared on it. Samples, started from
# `<|endoftext|>` (the start of a document), at several points of the run:

# %%
for i in sorted({0, len(records) // 3, 2 * len(records) // 3, len(records) - 1}):
    r = records[i]
    print(f"--- step {r['step']} ({r['tokens']:,} tokens), val loss {r['val_loss']:.3f}")
    print(r["samples"][0][:300])

# %% [markdown]
# At step 0 the sample is random tokens. By step 450 it has learned indentation and quotes; by the end it writes
# the shapes of Python files: a module docstring first (the corpus's documents start that way), `import` lines,
# `def name(self):` with an indented body, `raise`, `return self.x`, while the names and words are mostly
# invented. A 0.66M-parameter model after 3 million tokens knows the syntax, not the library.
#
# The run's checkpoint holds the loader's place, so it continues exactly: `python -m scratchlm pretrain --resume
# --out runs/lesson11/pretrain --max-iters 3000` (keep `--lr-decay-iters` at the first run's length to stay on
# its schedule, or use `--schedule wsd`, whose constant phase can be extended at will).

# %%
ckpt = checkpoint.load(WORK / "pretrain")
print({"step": ckpt.step, "loader": ckpt.extra["loader"], "world_size": ckpt.extra["world_size"]})
assert ckpt.step == run_config.train.max_iters

# %% [markdown]
# ## Summary
#
# - A corpus is tokenized **once** into fixed-size shards of `uint16`/`uint32` ids plus an index with a
#   sha256 per shard; a run maps them into memory and starts in milliseconds, where reading and encoding the
#   text took seconds, and touches only the pages its batches read.
# - Tokenization parallelises over documents; results are written in order, so the shards do not depend on
#   the number of workers.
# - The loader's windows are disjoint across ranks and, together, the batch one process with the global batch
#   would read; its state (epoch, position) makes a resumed run continue at the exact token, on any number of
#   processes.
# - Accumulating micro-batches gives the big batch's gradient; DDP all-reduces gradients once per step
#   (`no_sync` on the other micro-batches), so R processes × b take the steps of one process × Rb.
# - bfloat16 autocast changes the loss in the third decimal; whether it is faster depends on the hardware.
# - `python -m scratchlm prepare` and `python -m scratchlm pretrain` (alone or under `torchrun`) are the
#   engineered versions of every piece above.
#
# ## Exercises
#
# 1. Prepare the standard library with GPT-2's `r50k_base` instead of the lesson's 2048-id BPE. How many bytes
#    per token does each give, and what does the 50k-row embedding do to the step time of the CPU model?
# 2. Run the pretraining of section 8 with `schedule="wsd"` and the same number of steps. Compare the val-loss
#    curves: where does each schedule gain?
# 3. Launch the section-7 demo with `--nproc_per_node=2` and `--batch-tokens 256` against one process with
#    `--batch-size 8 --batch-tokens 256`. How many micro-batches does each accumulate, and do the runs still agree?
# 4. Kill one of the two processes of a DDP run (`kill -9` on a rank's pid). What do the other rank and
#    `torchrun` report, and how long does it take? Resume the run from its checkpoint in a single process.
