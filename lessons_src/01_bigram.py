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
# # 01 · The bigram language model
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/01_bigram.ipynb)
#
# A language model gives a probability to every possible next token, given the tokens so far. The simplest
# one worth the name looks back exactly one token: the **bigram model**, $p(\text{next} = j \mid \text{current} = i)$.
# It writes poor Shakespeare, but every piece of the machinery a GPT needs is already here, small enough to
# see whole.
#
# **What you will build**
#
# 1. The data pipeline the whole course uses: Tiny Shakespeare as characters, a 65-symbol vocabulary,
#    a tokenizer, a train/validation split and random batches of `(x, y)` windows.
# 2. A bigram model made by *counting*: a 65×65 table of how often each character follows each other one,
#    normalised into probabilities, sampled from, and scored by its negative log-likelihood (NLL).
# 3. The chain from a model's raw scores to its loss, written by hand: a numerically stable softmax (the
#    log-sum-exp trick, and why the textbook formula overflows), cross-entropy built on it and checked against
#    `F.cross_entropy`, and **perplexity**, the loss read as an effective number of choices.
# 4. The same model as a *neural network*: a 65×65 table of logits (`nn.Embedding`) trained by gradient
#    descent. We show that it converges to the counting model, and why it must. This lesson writes the
#    optimisation loop out in full, once; later lessons call the library's `train`, which runs the same loop.
# 5. A check that our model is the one in the library, `scratchlm.bigram.BigramLanguageModel`, which later
#    lessons import instead of rebuilding it.
#
# Everything here is tiny (4,225 parameters), so the tensors stay on the CPU whatever device the setup finds.

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
configure_threads()
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %% [markdown]
# The rest of the imports: PyTorch's layers, plotting, and the library's data and tokenizer modules.

# %%
import math

import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.colors import LogNorm

from scratchlm.data import get_batch, load_text, split
from scratchlm.tokenizers import visible
from scratchlm.tokenizers.char import CharTokenizer

# %% [markdown]
# ## 1 · The data
#
# `load_text` fetches Tiny Shakespeare (about 1 MB of plays) once, checks its sha256 and caches it under `data/`.

# %%
text = load_text("tinyshakespeare")
print(f"{len(text):,} characters")
print(text[:230])

# %% [markdown]
# A play: speakers' names on their own line ending in a colon, verse below, a blank line between speeches.
# A character-level model has to learn all of that layout from the characters alone.
#
# ### The vocabulary
#
# Our tokens are single characters. `CharTokenizer.from_text` collects the distinct characters of the text
# and sorts them by code point, so a character's id is its rank.

# %%
# NBVAL_CHECK_OUTPUT
tok = CharTokenizer.from_text(text)
V = tok.vocab_size
assert V == 65
print(f"vocab_size = {V}")
print(repr("".join(tok.chars)))

# %% [markdown]
# 65 symbols: newline, space, ten punctuation marks, the digit `3`, and the 26 capital and 26 small letters.
# Newline is id 0 and space id 1.
#
# ### Encode and decode
#
# `encode` maps a string to a list of ids and `decode` maps ids back; a round trip gives the text back.

# %%
# NBVAL_CHECK_OUTPUT
ids = tok.encode("First Citizen:")
print(ids)
print(tok.decode(ids))

# %% [markdown]
# Capital `F` is id 18 and small `i` id 47: all capitals sort before all small letters. Now the whole text
# becomes one 1-D tensor of ids, and we check the round trip on every character of it.

# %%
data = torch.tensor(tok.encode(text), dtype=torch.long)
assert tok.decode(data.tolist()) == text
print(data.shape, data.dtype)

# %% [markdown]
# ### Character frequencies
#
# How often does each character occur? A bar chart, most frequent first, on a log scale because the counts
# span five orders of magnitude. A space or a newline is invisible on an axis, so the library's `visible` draws
# them as `␣` and `⏎`; the course labels characters and tokens this way everywhere.

# %%
labels = [visible(c) for c in tok.chars]
freq = torch.bincount(data, minlength=V)
order = freq.argsort(descending=True)

fig, ax = plt.subplots(figsize=(12, 3.2))
ax.bar(range(V), freq[order].tolist(), color="tab:blue")
ax.set_xticks(range(V), [labels[i] for i in order.tolist()], fontsize=8)
ax.set_yscale("log")
ax.set_xlim(-0.8, V - 0.2)
ax.set_ylabel("occurrences")
ax.set_title("Character frequencies in Tiny Shakespeare (log scale)")
plt.show()
print("most common: ", [(labels[i], freq[i].item()) for i in order[:5].tolist()])
print("least common:", [(labels[i], freq[i].item()) for i in order[-5:].tolist()])

# %% [markdown]
# Space is the most common character, nearly twice as common as `e`; at the other end, a few symbols occur only a
# handful of times, so whatever our model learns about what follows them rests on very little evidence.
#
# ### Train and validation split
#
# We keep the last 10% of the text for validation. The cut is **contiguous**, not a shuffle of positions:
# the model will read windows of consecutive characters, and with a random split almost every validation
# window would overlap training text, so the validation loss would measure memory instead of generalisation.
# A contiguous cut gives the model a stretch of the play it has never seen.

# %%
train_data, val_data = split(data, val_fraction=0.1)
assert len(train_data) + len(val_data) == len(data)
print(f"train: {len(train_data):,} ids   val: {len(val_data):,} ids")
print(repr(tok.decode(val_data[:60].tolist())))

# %% [markdown]
# Validation starts on the last character of a speech: the cut ignores the text's structure, which does no harm
# when all we want from it is a loss.
#
# ### Batches
#
# `get_batch` samples `batch_size` random windows of `block_size` characters. `x` holds the windows and `y`
# the windows that start one character later: `y[b, t]` is the character that follows `x[b, t]` in the text.
# We pass it an explicit generator, so the batch depends only on the seed.

# %%
g = set_seed(1337)
x, y = get_batch(train_data, block_size=8, batch_size=4, generator=g)
print("x", tuple(x.shape), "y", tuple(y.shape))
print(x)
print(y)
assert torch.equal(x[:, 1:], y[:, :-1])  # y is x moved one character along the text

# %%
for b in range(4):
    print(f"{tok.decode(x[b].tolist())!r:>12} -> {tok.decode(y[b].tolist())!r}")

# %% [markdown]
# Each column of a batch is a training example for a bigram model: input `x[b, t]`, target `y[b, t]`. One
# batch of 4 windows of 8 characters therefore carries 32 `(current, next)` pairs.
#
# ## 2 · The counting bigram model
#
# The most direct estimate of $p(j \mid i)$: count how often character $j$ follows character $i$ in the training
# text, $N_{ij}$, and divide by how often $i$ is followed by anything. First the counts, with a plain loop
# over the first 20,000 pairs.

# %%
xs, ys = train_data[:-1], train_data[1:]  # every (current, next) pair of the training text
n_loop = 20_000
counts_loop = torch.zeros(V, V, dtype=torch.long)
for i, j in zip(xs[:n_loop].tolist(), ys[:n_loop].tolist(), strict=True):
    counts_loop[i, j] += 1
print(f"{counts_loop.sum().item():,} pairs counted in the loop")

# %% [markdown]
# The vectorised form: turn each pair $(i, j)$ into one number $i \cdot V + j$ and let `torch.bincount` count
# them all at once. On the prefix it must agree with the loop.


# %%
def count_pairs(ids: torch.Tensor) -> torch.Tensor:
    """(V, V) int64 table: entry [i, j] is how often id j directly follows id i in the 1-D tensor `ids`."""
    return torch.bincount(ids[:-1] * V + ids[1:], minlength=V * V).view(V, V)


assert torch.equal(count_pairs(train_data[: n_loop + 1]), counts_loop)
train_counts, val_counts = count_pairs(train_data), count_pairs(val_data)
assert train_counts.sum() == len(train_data) - 1
print(f"{train_counts.sum().item():,} training pairs; {(train_counts > 0).sum().item()} of {V * V} cells non-zero")
top = train_counts.flatten().topk(8)
print([(labels[k // V] + labels[k % V], n) for n, k in zip(top.values.tolist(), top.indices.tolist(), strict=True)])

# %% [markdown]
# The most frequent pairs are word boundaries (`e␣`, `␣t`) and the start of `the`. Two thirds of the table is
# empty: most character pairs never occur at all. The whole table as a heat map, on a log colour scale
# (white cells are zero):

# %%
groups = [tok.stoi["A"] - 0.5, tok.stoi["a"] - 0.5]  # borders: symbols | capitals | small letters
TICK_CHARS = "\n ,.AEIOTaehioqtu"  # 65 labels on one axis are unreadable: name these, mark every character


def label_characters(ax, fontsize=9):
    """Name a few characters on both axes of a V x V map (a short tick for every one of them)."""
    ticks = [tok.stoi[c] for c in TICK_CHARS if c in tok.stoi]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks, [labels[i] for i in ticks], fontsize=fontsize)
        axis.set_ticks(range(V), minor=True)
    ax.tick_params(which="minor", length=2)


fig, ax = plt.subplots(figsize=(10.5, 9.5))
im = ax.imshow(train_counts.numpy(), norm=LogNorm(vmin=1), cmap="viridis")
for b in groups:
    ax.axhline(b, color="gray", lw=0.6)
    ax.axvline(b, color="gray", lw=0.6)
label_characters(ax)
ax.set_xlabel("next character $j$")
ax.set_ylabel("current character $i$")
ax.set_title("Bigram counts $N_{ij}$ in the training split (log scale, white = 0)")
fig.colorbar(im, ax=ax, shrink=0.8, label="count")
plt.show()

# %% [markdown]
# The grey lines cut the table into symbols, capitals and small letters, and each block tells a story. Small
# letter after small letter (bottom right) is the densest, brightest block: the inside of words. A small letter is
# followed by space or punctuation (bottom left, bright) but never directly by a capital (the empty block in
# between). In the newline row (top) the brightest cells are under the capitals: a line of verse opens with a
# capital. Capitals are followed by small letters in ordinary words and by capitals in the speakers' names.
#
# ### From counts to probabilities
#
# Dividing each row by its sum gives a conditional distribution, $P_{ij} = N_{ij} / \sum_k N_{ik}$.

# %%
P = train_counts.float() / train_counts.sum(dim=1, keepdim=True)
torch.testing.assert_close(P.sum(dim=1), torch.ones(V))
for c in ["q", "."]:
    row = P[tok.stoi[c]]
    best = row.topk(3)
    nexts = [(labels[k], round(p, 3)) for p, k in zip(best.values.tolist(), best.indices.tolist(), strict=True)]
    print(f"after {c!r}:", nexts)

# %% [markdown]
# After `q` comes `u`, every time; after a full stop comes a newline, sometimes a space. Each row is a
# 65-sided die, loaded by the counts.
#
# ### Sampling
#
# To write text, start from a newline, roll the die of the current character to pick the next one, and repeat.
# `torch.multinomial` rolls the die; the seeded generator makes the text reproducible.

# %%
g = set_seed(1337)
ix = tok.stoi["\n"]
out = []
for _ in range(300):
    ix = torch.multinomial(P[ix], num_samples=1, generator=g).item()
    out.append(ix)
count_sample = tok.decode(out)
print(count_sample)

# %% [markdown]
# It has the texture of the play (line breaks followed by capitals, punctuation, words of plausible length) but
# hardly a real word: one character of memory is too little to spell.
#
# ### How good is it? The negative log-likelihood
#
# We score a model by the probability it gives the text it should predict. For pairs $(i_n, j_n)$ the average
# negative log-likelihood is
#
# $$\text{NLL} = -\frac{1}{N}\sum_{n=1}^{N} \log P_{i_n j_n} \quad \text{(in nats, natural log)}.$$
#
# Lower is better; a model that guesses uniformly scores $\ln 65 \approx 4.17$. The first few pairs by hand:

# %%
for i, j in zip(xs[:5].tolist(), ys[:5].tolist(), strict=True):
    print(f"{labels[i]}{labels[j]}  p = {P[i, j].item():.4f}   -log p = {-P[i, j].log().item():.3f}")

# %% [markdown]
# Averaging over a million pairs one by one is wasteful: identical pairs contribute identical terms, so the
# NLL depends on the text only through the count table, $\text{NLL} = -\frac{1}{N}\sum_{ij} N_{ij} \log P_{ij}$.
# We compute it both ways and check they agree.


# %%
def nll_from_counts(log_probs: torch.Tensor, pair_counts: torch.Tensor) -> torch.Tensor:
    """Mean NLL of all pairs tallied in `pair_counts` (V, V) under a (V, V) table of log-probabilities.

    Cells with zero count contribute nothing, even where the log-probability is -inf.
    """
    terms = torch.where(pair_counts > 0, pair_counts * log_probs, 0.0)
    return -terms.sum() / pair_counts.sum()


per_pair = -P[xs, ys].log().mean()  # one term per pair of the training text
count_train = nll_from_counts(P.log(), train_counts)
torch.testing.assert_close(count_train, per_pair)
count_val = nll_from_counts(P.log(), val_counts)
print(f"counting model: train NLL {count_train:.4f}   val NLL {count_val:.4f}   (uniform: {math.log(V):.4f})")

# %% [markdown]
# On the training text the counting model scores about 2.45 nats per character, far better than uniform
# guessing. On validation it scores **infinity**: some pairs in the validation text never occur in
# training, so the model gives them probability 0.

# %%
unseen = (val_counts > 0) & (train_counts == 0)
assert count_val.isinf() and unseen.any()
pairs = [labels[k // V] + labels[k % V] for k in unseen.flatten().nonzero().flatten().tolist()]
print(f"{unseen.sum().item()} pair types, {val_counts[unseen].sum().item()} occurrences, e.g. {pairs[:10]}")

# %% [markdown]
# ### Perplexity: the loss as a number of choices
#
# "2.45 nats per character" is hard to picture. Exponentiate it instead. The **perplexity** of a model on a text
# is
#
# $$\text{PPL} = e^{\text{NLL}} = \Big(\prod_{n=1}^{N} \frac{1}{p_n}\Big)^{1/N},$$
#
# the geometric mean of $1/p_n$, where $p_n$ is the probability the model gave the character that actually came
# next. Suppose a model always hesitated between exactly $k$ equally likely characters, the right one among them:
# every $p_n = 1/k$, the NLL is $\ln k$, and the perplexity is $k$. So perplexity reads a loss as the **effective
# number of choices** the model is left with at each step. The uniform model has perplexity 65 exactly; an
# infinite NLL is an infinite perplexity.
#
# The product form is the definition, but it cannot be computed as written: a million factors of about 10
# overflow any floating-point format, which is one reason losses are kept as sums of logs. On the first 100 pairs
# the product still fits in float64 (about $10^{106}$), and the two forms agree:


# %%
def perplexity(nll: float) -> float:
    """e^NLL (NLL in nats per token): the number of equally likely choices that would give the same loss."""
    return math.exp(nll)


p_first = P[xs[:100], ys[:100]].double()  # the probability of each of the first 100 true next characters
product_form = torch.prod(1 / p_first) ** (1 / 100)
torch.testing.assert_close(product_form, torch.tensor(perplexity(-p_first.log().mean().item()), dtype=torch.float64))

uniform_nll = nll_from_counts(torch.full((V, V), -math.log(V)), train_counts).item()
assert math.isclose(perplexity(uniform_nll), V, rel_tol=1e-5)
print(f"first 100 pairs: perplexity {product_form:.3f} (product form) = {perplexity(-p_first.log().mean().item()):.3f}")
print(f"uniform model:   NLL {uniform_nll:.4f} -> perplexity {perplexity(uniform_nll):.2f}")
print(f"counting model:  NLL {count_train:.4f} -> perplexity {perplexity(count_train.item()):.2f} (train)")
print(f"                 NLL {count_val:.4f} -> perplexity {perplexity(count_val.item()):.2f} (val)")

# %% [markdown]
# Knowing the current character cuts the next one down from 65 candidates to the equivalent of about 12 equally
# likely ones. Perplexity is per token, so it only compares models that cut the text into the same tokens: a
# word-level model's perplexity of 100 and our character-level 12 measure different things. Lesson 05 changes
# the tokens, which is why the course's common yardstick (the ladder at the end of this lesson) is **bits per
# byte**: the NLL of the whole text, converted to bits ($\div \ln 2$) and divided by its length in bytes.

# %% [markdown]
# ### Why the normalised counts are the best a bigram can do (on the training text)
#
# Split the NLL by rows: row $i$ contributes $-\sum_j N_{ij} \log P_{ij}$, and each row of $P$ must sum to 1.
# Minimise it with a Lagrange multiplier $\lambda$:
#
# $$\frac{\partial}{\partial P_{ij}} \Big[-\sum_{j'} N_{ij'}\log P_{ij'} + \lambda\big(\sum_{j'} P_{ij'} - 1\big)\Big]
# = -\frac{N_{ij}}{P_{ij}} + \lambda = 0,$$
#
# so $P_{ij} \propto N_{ij}$, and normalising gives $P_{ij} = N_{ij}/\sum_k N_{ik}$ (the NLL is convex in $P$, so this
# stationary point is the minimum). The normalised counts are the **maximum likelihood estimate**: no table of
# bigram probabilities has a lower NLL on the training text. Its training NLL is the floor that the neural model
# below can reach but not pass.
#
# ### Smoothing
#
# The zeros that make the validation NLL infinite are an artefact of a finite text. **Additive smoothing**
# pretends every pair was seen $\alpha$ extra times:
#
# $$P^{(\alpha)}_{ij} = \frac{N_{ij} + \alpha}{\sum_k N_{ik} + \alpha V}.$$
#
# With $\alpha = 1$ (add-one, or Laplace, smoothing) no probability is zero, and rows with few counts are pulled
# strongly towards uniform while well-measured rows barely move.

# %%
alpha = 1.0
P_smooth = (train_counts.float() + alpha) / (train_counts.sum(dim=1, keepdim=True) + alpha * V)
smooth_train = nll_from_counts(P_smooth.log(), train_counts)
smooth_val = nll_from_counts(P_smooth.log(), val_counts)
assert smooth_train > count_train  # any table other than the MLE fits the training text worse
assert smooth_val.isfinite()
print(f"add-one smoothing: train NLL {smooth_train:.4f}   val NLL {smooth_val:.4f}")

# %% [markdown]
# Smoothing costs a little on the training text (the MLE is the optimum there) and buys a finite validation
# loss. It is a little higher than the training loss: the validation text is a different stretch of the plays,
# with its own mix of speakers and words, and no table fitted to the training text fits it quite as well.
#
# ## 3 · The neural bigram model
#
# Now forget counting. Give the model a free table $W$ of $65 \times 65$ real numbers, the **logits**, and
# define $p(\cdot \mid i) = \mathrm{softmax}(W_i)$: exponentiate row $i$ and normalise it. Then adjust $W$ by
# gradient descent to lower the NLL, which for a softmax output is exactly the **cross-entropy** loss,
# `F.cross_entropy`. Looking up row $i$ of a table is what `nn.Embedding(V, V)` does.

# %%
set_seed(0)
table = nn.Embedding(V, V)  # default initialisation: random N(0, 1) logits
logits = table(x)  # (B, T) ids -> (B, T, V) logits
print("x", tuple(x.shape), "-> logits", tuple(logits.shape))
one_hot = F.one_hot(x, V).float()  # (B, T, V)
torch.testing.assert_close(one_hot @ table.weight, logits)

# %% [markdown]
# An embedding lookup is a matrix product with one-hot vectors, done without the multiplications by zero: the
# neural bigram is a one-layer linear network with no bias.
#
# ### From logits to a loss, by hand
#
# `F.cross_entropy(logits, targets)` does three things: a softmax turns each row of logits into probabilities,
# a log, and the average of minus the log-probability of each target. We write the chain ourselves, because the
# obvious way to write it breaks.
#
# **The textbook softmax**, $\mathrm{softmax}(z)_j = e^{z_j} / \sum_k e^{z_k}$, on three rows that differ only by a
# constant added to every logit:


# %%
def softmax_naive(z: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension exactly as the formula reads. Overflows; for contrast only."""
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


z_rows = torch.tensor([2.0, 1.0, 0.1]) + torch.tensor([[0.0], [100.0], [-120.0]])  # (3, 3): shifts 0, +100, -120
print(z_rows)
print(softmax_naive(z_rows))
print(
    f"float32: largest number {torch.finfo(torch.float32).max:.2e} = e^{math.log(torch.finfo(torch.float32).max):.2f}"
)

# %% [markdown]
# The first row is fine. In the second, $e^{102}$ is beyond float32's largest number ($3.4 \times 10^{38} = e^{88.7}$):
# it becomes `inf`, and `inf / inf` is `nan`. In the third, $e^{-118}$ is below the smallest float32 and becomes 0,
# and `0 / 0` is `nan` too. Logits of a hundred are not exotic: a confident model produces them, and lesson 02
# shows attention scores growing that large when they are not scaled.
#
# **The fix is a shift.** Subtracting the same constant $c$ from every logit changes nothing, since $e^{-c}$
# cancels between the numerator and the denominator:
#
# $$\frac{e^{z_j - c}}{\sum_k e^{z_k - c}} = \frac{e^{-c}\, e^{z_j}}{e^{-c} \sum_k e^{z_k}} = \mathrm{softmax}(z)_j.$$
#
# Choose $c = m = \max_k z_k$: every exponent is then $\le 0$, so nothing overflows, and the largest term is
# $e^0 = 1$, so the denominator is at least 1 and never underflows to 0.
#
# **The log goes inside.** The loss needs $\log \mathrm{softmax}(z)_j = z_j - \log \sum_k e^{z_k}$. The second
# term is the **log-sum-exp**, with the same shift:
#
# $$\mathrm{LSE}(z) = \log \sum_k e^{z_k} = m + \log \sum_k e^{z_k - m}.$$
#
# Taking the log of the softmax's output would fail in a second way: a probability of $10^{-50}$ is 0 in float32,
# and $\log 0 = -\infty$. Computing $z_j - \mathrm{LSE}(z)$ never forms the tiny probability.


# %%
def logsumexp(z: torch.Tensor) -> torch.Tensor:
    """log(sum(exp(z))) over the last dimension, shifted by the row maximum so that no exp overflows."""
    m = z.max(dim=-1, keepdim=True).values
    return (m + (z - m).exp().sum(dim=-1, keepdim=True).log()).squeeze(-1)


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log softmax(z) over the last dimension, as z - LSE(z): finite wherever z is."""
    return z - logsumexp(z).unsqueeze(-1)


def softmax(z: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension, stable: the exp of the stable log-softmax."""
    return log_softmax(z).exp()


print(softmax(z_rows))
for row in softmax(z_rows)[1:]:
    torch.testing.assert_close(row, softmax(z_rows)[0])  # shifting the logits changes nothing
torch.testing.assert_close(softmax(z_rows), F.softmax(z_rows, dim=-1))
torch.testing.assert_close(logsumexp(z_rows), torch.logsumexp(z_rows, dim=-1))

z_wild = 300 * torch.randn(1000, V, generator=set_seed(0))  # logits in the hundreds, both signs
# the values reach thousands, where float32's spacing is 1e-4: compare to that precision, not to 1e-5
torch.testing.assert_close(log_softmax(z_wild), F.log_softmax(z_wild, dim=-1), rtol=0, atol=1e-3)
tiny = torch.tensor([0.0, -120.0])
print(f"log of softmax: {softmax_naive(tiny).log().tolist()}   log_softmax: {log_softmax(tiny).tolist()}")

# %% [markdown]
# All three rows now give the same probabilities, as they must, and they match `F.softmax`; our log-sum-exp and
# log-softmax match PyTorch's on logits in the hundreds. The last line is the second failure: the log of a
# probability of $e^{-120}$ computed as a probability is $-\infty$, while the log-softmax gives the exact $-120$.
#
# **Cross-entropy** is then one line: for logits $z_n$ (one row per position) and targets $y_n$,
#
# $$\mathcal{L} = \frac{1}{N} \sum_n -\log \mathrm{softmax}(z_n)_{y_n} = \frac{1}{N} \sum_n \big(\mathrm{LSE}(z_n) - z_{n, y_n}\big).$$
#
# Its gradient is worth knowing too. Differentiating $\mathrm{LSE}(z) - z_y$ with respect to $z_j$ gives
# $\mathrm{softmax}(z)_j - [j = y]$: the predicted probability minus the one-hot target, divided by $N$ for the
# mean. We check the loss against `F.cross_entropy` on the random table's logits for the batch of section 1, and
# on the same logits multiplied by 100, where the naive chain breaks down; and the gradient against autograd.


# %%
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log softmax(logits)[target] over the rows of `logits` (N, V), targets (N,) ids."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # z_{n, y_n}
    return (logsumexp(logits) - picked).mean()


z = table(x).view(-1, V).detach().requires_grad_(True)  # (32, V): the random table's logits for batch (x, y)
targets = y.view(-1)
loss_ours = cross_entropy(z, targets)
torch.testing.assert_close(loss_ours, F.cross_entropy(z, targets))
loss_ours.backward()
torch.testing.assert_close(z.grad, (softmax(z) - F.one_hot(targets, V)).detach() / len(targets))

z_hot = 100 * z.detach()
naive = -softmax_naive(z_hot)[torch.arange(len(targets)), targets].log().mean()
torch.testing.assert_close(cross_entropy(z_hot, targets), F.cross_entropy(z_hot, targets))
print(f"random logits:       ours {loss_ours:.4f}   F.cross_entropy {F.cross_entropy(z, targets):.4f}")
print(
    f"the same logits x100: ours {cross_entropy(z_hot, targets):.2f}   F.cross_entropy "
    f"{F.cross_entropy(z_hot, targets):.2f}   naive -log(softmax) {naive:.2f}"
)

# %% [markdown]
# Our cross-entropy equals PyTorch's, and its gradient is "softmax minus one-hot". On the scaled logits the
# naive chain returns `nan`: in some rows a logit above 88.7 overflowed `exp` to `inf`, and `inf / inf` is `nan`,
# while the stable version still agrees with PyTorch. From here on we use `F.cross_entropy` and
# `Tensor.log_softmax`, which compute exactly this (the asserts above), in fused kernels.
#
# As with the counts, the loss over a whole split only needs the pair counts: the logits for current character
# $i$ are the same row $W_i$ at every position where $i$ occurs. We check this on the validation split, token by
# token against the count-weighted form.

# %%
xv, yv = val_data[:-1], val_data[1:]
with torch.no_grad():
    per_token = F.cross_entropy(table(xv), yv)  # 111,539 rows of 65 logits
    from_counts = nll_from_counts(table.weight.log_softmax(dim=-1), val_counts)  # one 65 x 65 table
torch.testing.assert_close(per_token, from_counts)
print(f"random table, val NLL: {per_token:.4f} (token by token) = {from_counts:.4f} (from counts)")

# %% [markdown]
# The same number, from 65 rows instead of 111,539. So one **full-batch** gradient step on all ~1M training
# pairs costs no more than a step on 65 rows, and we can train on the whole training split at every step.
#
# ### Training, full batch
#
# We start from all-zero logits, which is the uniform distribution (loss $\ln 65$), and use Adam. Adam scales each
# parameter's step by the size of its recent gradients, so rows of rare characters (whose gradients are tiny
# because they carry little of the loss) learn as fast as rows of common ones; plain gradient descent would
# crawl on them. Each Adam step moves a logit by at most about `lr`, and useful logits span ~10 units, so a
# learning rate of 0.5 gets there in tens of steps.

# %%
steps_full = pick(smoke=60, cpu=300)
lr_full = 0.5
table = nn.Embedding(V, V)
nn.init.zeros_(table.weight)  # all logits equal: the uniform distribution
all_ids = torch.arange(V)
with torch.no_grad():
    assert abs(nll_from_counts(table(all_ids).log_softmax(-1), train_counts).item() - math.log(V)) < 1e-6

opt = torch.optim.Adam(table.parameters(), lr=lr_full)
curve_full = []
for _ in range(steps_full):
    loss = nll_from_counts(table(all_ids).log_softmax(dim=-1), train_counts)  # the loss over every training pair
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    curve_full.append(loss.item())

with torch.no_grad():
    log_probs_full = table.weight.log_softmax(dim=-1)
full_train = nll_from_counts(log_probs_full, train_counts).item()
full_val = nll_from_counts(log_probs_full, val_counts).item()
print(f"full batch, Adam lr={lr_full}, {steps_full} steps: train NLL {full_train:.4f}  val NLL {full_val:.4f}")
print(f"counting model (MLE):           train NLL {count_train:.4f}  gap {full_train - count_train:.5f} nats")
assert -1e-4 < full_train - count_train < 0.02  # converged to the counting model, and not below the optimum

# %% [markdown]
# Starting from uniform guessing, gradient descent lands on the counting model's training NLL: the gap is far
# inside the 0.02 nats the `assert` allows, and it cannot be negative, since the counts are the optimum.
#
# ### Training, minibatches
#
# The counts trick works only because a bigram sees one character of context. From lesson 02 on, the model reads
# long windows and there is no small table of counts to fall back on, so we train the way every later lesson
# does: a random minibatch from `get_batch` at every step. The gradient becomes noisy, so we let the learning
# rate decay to zero (a cosine schedule) to settle the noise at the end. At every step we also record the loss on
# the whole training split (cheap, thanks to the counts), to compare with the full-batch run.

# %%
steps_mini = pick(smoke=100, cpu=500)
batch_size, block_size, lr_mini = 64, 128, 0.3  # 8,192 (current, next) pairs per step
mini_table = nn.Embedding(V, V)
nn.init.zeros_(mini_table.weight)
opt = torch.optim.Adam(mini_table.parameters(), lr=lr_mini)
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_mini)
g = set_seed(1337)
curve_batch, curve_mini = [], []
for _ in range(steps_mini):
    with torch.no_grad():  # before the update, like the full-batch curve
        curve_mini.append(nll_from_counts(mini_table.weight.log_softmax(dim=-1), train_counts).item())
    xb, yb = get_batch(train_data, block_size, batch_size, generator=g)
    loss = F.cross_entropy(mini_table(xb).view(-1, V), yb.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    schedule.step()
    curve_batch.append(loss.item())

with torch.no_grad():
    mini_train = nll_from_counts(mini_table.weight.log_softmax(dim=-1), train_counts).item()
    mini_val = nll_from_counts(mini_table.weight.log_softmax(dim=-1), val_counts).item()
print(
    f"minibatch {batch_size}x{block_size}, Adam lr={lr_mini} cosine, {steps_mini} steps: "
    f"train NLL {mini_train:.4f}  val NLL {mini_val:.4f}  gap {mini_train - count_train:.4f} nats"
)
assert -1e-4 < mini_train - count_train < 0.02

# %% [markdown]
# The loss curves (steps on a log scale, so the first dozen steps get room), and on the right the distance from the
# optimum on a log scale, which shows what the left panel cannot: the full-batch run keeps closing in, while the
# minibatch run is held back by its noise until the learning rate decays.

# %%
steps_axis_full, steps_axis_mini = range(1, steps_full + 1), range(1, steps_mini + 1)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
ax1.plot(steps_axis_mini, curve_batch, color="tab:orange", alpha=0.3, lw=0.8, label="minibatch loss (one batch)")
ax1.plot(steps_axis_mini, curve_mini, color="tab:orange", label="minibatch run, whole train split")
ax1.plot(steps_axis_full, curve_full, color="tab:blue", label="full-batch run")
ax1.axhline(count_train.item(), color="black", ls="--", lw=1, label="counting model (MLE)")
ax1.set_ylim(count_train.item() - 0.1, math.log(V) + 0.05)
ax1.set_xscale("log")
ax1.set_xlabel("step (log scale)")
ax1.set_ylabel("NLL on the training text (nats)")
ax1.legend()
ax2.semilogy(steps_axis_full, [c - count_train.item() for c in curve_full], color="tab:blue", label="full batch")
ax2.semilogy(steps_axis_mini, [c - count_train.item() for c in curve_mini], color="tab:orange", label="minibatch")
ax2.axhline(0.02, color="gray", ls=":", lw=1, label="0.02 nats (the assert)")
ax2.set_xlabel("step")
ax2.set_ylabel("train NLL minus MLE (nats)")
ax2.legend()
fig.suptitle(f"Neural bigram, trained from zero logits with Adam (seed 1337, {device.type}, mode={MODE})")
plt.tight_layout()
plt.show()

# %% [markdown]
# Both runs start at $\ln 65$ and are close to the dashed line within a few dozen steps; everything after that is
# fine-tuning in the second decimal and beyond.
#
# ### Why the two models agree
#
# The gradient of the full-batch loss with respect to logit $W_{ij}$ is
# $\frac{1}{N}\big(\sum_k N_{ik}\, \mathrm{softmax}(W_i)_j - N_{ij}\big)$: the predicted count minus the observed
# count. It vanishes exactly when $\mathrm{softmax}(W_i)_j = N_{ij}/\sum_k N_{ik}$, the normalised counts. The only
# difference is at zero counts: there the MLE is 0, which a finite logit can only approach, so training keeps
# pushing those logits down. We check the gradient formula with autograd, then put the learned probabilities next
# to the counted ones.

# %%
W = table.weight.detach().clone().requires_grad_(True)
nll_from_counts(W.log_softmax(dim=-1), train_counts).backward()
row_totals = train_counts.sum(dim=1, keepdim=True)
predicted_minus_observed = (row_totals * W.softmax(dim=-1) - train_counts) / train_counts.sum()
torch.testing.assert_close(W.grad, predicted_minus_observed.detach())
print(f"largest |gradient| at the trained table: {W.grad.abs().max():.1e}")

# %%
learned = log_probs_full.exp()
fig, axes = plt.subplots(1, 2, figsize=(14, 6.6), layout="constrained")
norm = LogNorm(vmin=1e-7, vmax=1)
for ax, probs_, title in [
    (axes[0], P, "counted: normalised counts (white = 0)"),
    (axes[1], learned, "learned: softmax of the logits table"),
]:
    im = ax.imshow(probs_.numpy(), norm=norm, cmap="viridis")
    label_characters(ax, fontsize=8)
    ax.set_xlabel("next character")
    ax.set_ylabel("current character")
    ax.set_title(title)
fig.colorbar(im, ax=axes.tolist(), shrink=0.85, label="probability (log scale)")
plt.show()

# %% [markdown]
# Wherever a pair was seen, the two tables show the same colour. The one visible difference is the cells the
# counts leave white: the learned model gives them a tiny probability (the darkest colours) instead of zero, which
# is why its validation NLL is finite. Cell by cell, counted against learned probability, coloured by how often
# the pair occurs:

# %%
nonzero = train_counts > 0
fig, ax = plt.subplots(figsize=(5.8, 4.6))
sc = ax.scatter(
    P[nonzero].numpy(), learned[nonzero].numpy(), c=train_counts[nonzero].numpy(), s=7, norm=LogNorm(), cmap="plasma"
)
ax.plot([1e-5, 1], [1e-5, 1], color="gray", lw=0.8, zorder=0)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("counted probability")
ax.set_ylabel("learned probability")
ax.set_title(f"The {nonzero.sum().item()} pairs seen in training")
fig.colorbar(sc, ax=ax, label="count $N_{ij}$")
plt.show()
print(f"largest |log learned - log counted| over seen pairs: {(log_probs_full - P.log())[nonzero].abs().max():.3f}")

# %% [markdown]
# The pairs lie on the diagonal across five orders of magnitude of probability: gradient descent on the logits
# found the normalised counts. The only visible misses are a few pairs seen once or twice (bottom left): their
# share of the loss, and so their gradient, is the smallest, and they are still on their way.
#
# How the models compare, on the same training and validation splits:

# %%
rows = [
    ("uniform", math.log(V), math.log(V)),
    ("counts (MLE)", count_train.item(), count_val.item()),
    (f"counts, add-{alpha:g} smoothing", smooth_train.item(), smooth_val.item()),
    (f"neural, full batch ({steps_full} steps)", full_train, full_val),
    (f"neural, minibatch ({steps_mini} steps)", mini_train, mini_val),
]
print(f"Tiny Shakespeare, 90/10 split, seed 1337, {device.type}, mode={MODE}")
print(f"{'model':36} {'train NLL':>10} {'val NLL':>10} {'val perplexity':>15}")
for name, tr, va in rows:
    print(f"{name:36} {tr:10.4f} {va:10.4f} {perplexity(va):15.2f}")

# %% [markdown]
# Apart from the unsmoothed counts' infinite validation loss, all the bigram models sit within a few hundredths of a
# nat of each other: about 2.45 nats per character on the training text and 2.48 to 2.49 on validation, a
# validation perplexity of about 12. That is the floor for one character of context: knowing it still leaves the
# equivalent of a dozen equally likely next characters, and only a longer context (lesson 02 onwards) gets below it.
#
# ### Sampling from the neural model
#
# The same loop as before, now written the way a neural language model samples: feed the current token, take the
# logits, turn them into probabilities with a softmax, and draw the next token.

# %%
g = set_seed(1337)
context = torch.tensor([[tok.stoi["\n"]]])  # (B=1, T=1): start from a newline
with torch.no_grad():
    for _ in range(300):
        logits = table(context[:, -1])  # (1, V): a bigram only looks at the last token
        probs = F.softmax(logits, dim=-1)
        next_id = torch.multinomial(probs, num_samples=1, generator=g)  # (1, 1)
        context = torch.cat([context, next_id], dim=1)
neural_sample = tok.decode(context[0, 1:].tolist())
print(neural_sample)

# %%
same = next((k for k, (a, b) in enumerate(zip(count_sample, neural_sample, strict=True)) if a != b), len(count_sample))
print(f"the neural and the counting sample (same seed) agree on their first {same} characters")

# %% [markdown]
# With the same seed the two models write the same text. `torch.multinomial` turns each uniform random draw into a
# character through the cumulative probabilities of the row, and the two tables are so close that a draw would
# have to land within their tiny difference to pick another character. (Train for fewer steps and sooner or later
# a draw does land in such a gap; from there on the two texts differ.)
#
# ## 4 · Check against the library
#
# `scratchlm.bigram.BigramLanguageModel` is the engineered version of this lesson's model: an `nn.Embedding(V, V)`
# of logits, zero-initialised, whose `forward(idx, targets)` returns `(logits, loss)` like every model in the
# course. We load our trained table into it and check that it computes the same logits and loss, and that
# `scratchlm.generation.generate` is our sampling loop.

# %%
from scratchlm.bigram import BigramLanguageModel
from scratchlm.generation import generate

model = BigramLanguageModel(V)
_, loss0 = model(x, y)
torch.testing.assert_close(loss0, torch.tensor(math.log(V)))  # zero initialisation, like ours
with torch.no_grad():
    model.logits_table.weight.copy_(table.weight)

xb, yb = get_batch(val_data, block_size=64, batch_size=32, generator=set_seed(0))
with torch.no_grad():
    logits_lib, loss_lib = model(xb, yb)
    ours = table(xb)
torch.testing.assert_close(logits_lib, ours)
torch.testing.assert_close(loss_lib, F.cross_entropy(ours.view(-1, V), yb.view(-1)))

lib_sample = generate(model, torch.tensor([[tok.stoi["\n"]]]), max_new_tokens=300, seed=1337)
assert torch.equal(lib_sample, context)
print(f"library bigram: same logits, loss {loss_lib:.4f} on a validation batch, same 300-character sample")

# %% [markdown]
# From here on the course imports `BigramLanguageModel` and `generate` instead of re-deriving them.

# %% [markdown]
# ## Where this lesson stands on the ladder
#
# Each lesson trains its models on its own budget, chosen for what that lesson wants to show, so their losses
# cannot be compared from one lesson to the next. The course's common yardstick is **the ladder**
# (`scratchlm.ladder`): every model the course builds, trained with one recipe on one fixed budget (the same
# training text, steps, batches, schedule and seeds) and scored on the same held-out text in **bits per byte**:
# the held-out NLL converted from nats to bits ($\div \ln 2$) and spread over the bytes of the text rather than
# its tokens, so that models with different tokenizers (lesson 06) stay comparable. Our characters are all ASCII,
# one byte each, so for them bits per byte is simply NLL / ln 2. The bigram is the first rung: `run_rung` trains
# it on the ladder's budget now, and `show_ladder` prints the table committed with the course (every rung, two
# or three seeds), with this lesson's rung marked and the value measured here beside the committed one; the plot
# shows the rungs of the lessons so far, each seed as a dot.

# %%
from scratchlm.ladder import run_rung, show_ladder

bigram_rung = run_rung("bigram", seed=0)
show_ladder(highlight=["bigram"], measured=[bigram_rung])
rung_nats = bigram_rung["heldout_nats_per_token"]
print(
    f"bigram rung: {rung_nats:.4f} nats per character / ln 2 = {bigram_rung['bits_per_byte']:.4f} bits per byte "
    f"(uniform guessing: log2(65) = {math.log2(V):.4f})"
)
assert math.isclose(bigram_rung["bits_per_byte"], rung_nats / math.log(2), rel_tol=1e-3)  # one byte per character
if MODE != "smoke":  # trained on any budget, a bigram cannot get far below lesson 01's counted table
    assert rung_nats > smooth_val.item() - 0.02, (rung_nats, smooth_val.item())

# %% [markdown]
# One character of context takes the held-out text from 6.02 bits per character (uniform guessing) to 3.61, the
# rung every later model is measured against. In nats that is 2.50 per character, a little above the 2.48 to 2.49
# of section 3's tables. The ladder trains every rung with one recipe, made for the GPTs of later lessons, and its
# peak learning rate of 0.007 moves the table's logits far less per step than section 3's 0.3 to 0.5 (each Adam
# step moves a logit by about the learning rate), which is the likely reason the rarest rows are not yet at their
# counts.
#
# ## Summary
#
# - Tiny Shakespeare becomes 1.1M ids over a 65-character vocabulary (`CharTokenizer`), split 90/10
#   *contiguously* so validation text is unseen, and served as `(x, y)` windows where `y` is `x` shifted by one.
# - A bigram model is a 65×65 table of conditional probabilities. Counting pairs and normalising the rows gives the
#   maximum likelihood estimate, the table with the lowest NLL on the training text (about 2.45 nats per character
#   here, against 4.17 for uniform guessing).
# - Unseen pairs get probability 0 and an infinite validation NLL; additive smoothing trades a little training NLL
#   for a finite validation NLL.
# - **Perplexity** is $e^{\text{NLL}}$, the geometric mean of $1/p$ over the true next tokens: the effective number
#   of equally likely choices left at each step. Uniform guessing has perplexity 65 (= V); the bigram models about
#   12 on validation. It compares models only on the same tokens; across tokenizers the course uses bits per byte.
# - The textbook softmax overflows (`exp` of a logit above 88.7 is `inf` in float32, and `inf / inf` is `nan`) and
#   its log underflows. Shifting by the row maximum changes nothing mathematically and fixes both: the
#   **log-sum-exp** $m + \log \sum_k e^{z_k - m}$ gives a stable log-softmax, and cross-entropy is
#   $\mathrm{LSE}(z) - z_y$, equal to `F.cross_entropy`, with gradient "softmax minus one-hot".
# - The neural bigram (an `nn.Embedding(V, V)` of logits, softmax, cross-entropy, Adam) converges to the same table,
#   because its full-batch gradient is "predicted minus observed counts". For a bigram the counts are all the data
#   the loss needs, so full-batch training is cheap; minibatches from `get_batch` get there too, with noise.
# - Sampling is a loop of softmax and `torch.multinomial`; with a seeded generator it is reproducible. The library's
#   `BigramLanguageModel` and `generate` match ours exactly.
#
# ## Exercises
#
# 1. **Smoothing strength.** Compute the validation NLL of $P^{(\alpha)}$ for $\alpha$ from $10^{-3}$ to $10$ on a log
#    grid and plot it. Which $\alpha$ is best, and why does the training NLL only ever go up as $\alpha$ grows?
# 2. **Trigrams.** Count triples into a $65 \times 65 \times 65$ tensor (hint: `bincount` of $i V^2 + j V + k$). What
#    fraction of the cells is zero? With the best smoothing you can find, how much lower is the validation NLL than
#    the bigram's, and do the samples look better?
# 3. **Temperature.** Sample from the neural model with `softmax(logits / τ)` for τ = 0.5, 1 and 2. What happens to
#    the text, and what does τ → 0 (always the most likely character) produce, and why must it loop?
# 4. **Regularisation instead of smoothing.** Train the full-batch neural model with `torch.optim.AdamW` and a
#    weight decay of 0.01 to 1. Weight decay pulls logits towards 0, i.e. towards uniform: compare its
#    validation NLL with additive smoothing, and explain which rows it changes most.
