"""Post-training: the task suite, scoring, the chat format, batching, LoRA, vocabulary growth and SFT runs."""

from __future__ import annotations

import itertools
import json
import math
import string

import pytest
import torch
import torch.nn.functional as F

from scratchlm import checkpoint
from scratchlm.attention import document_mask
from scratchlm.errors import ConfigError, ConversationError, DataError, OutputError
from scratchlm.model import GPT, GPTConfig
from scratchlm.posttraining import (
    CHAT_TOKENS,
    SFT_TRAIN,
    SKILLS,
    SFTConfig,
    add_chat_tokens,
    add_lora,
    check_length,
    check_messages,
    complete,
    fit_to_context,
    grow_vocabulary,
    held_out_items,
    lora_parameters,
    merge_lora,
    merged_state_dict,
    most_common_answer_accuracy,
    pack,
    packed_batch,
    pad_batch,
    parse,
    pass_at_k,
    prompt_ids,
    raw_lines,
    read_jsonl,
    render,
    require_chat_tokens,
    sft,
    task_accuracy,
    train_new_rows_only,
    training_items,
    wilson_interval,
)
from scratchlm.posttraining.recipe import base_corpus
from scratchlm.tokenizers import CharTokenizer, ExtendedTokenizer, tokenizer_from_dict
from scratchlm.training import train_step

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHABET = sorted(set(string.ascii_letters + string.digits + string.punctuation + " \n"))


@pytest.fixture
def chat_tokenizer() -> ExtendedTokenizer:
    return add_chat_tokens(CharTokenizer(ALPHABET))


def tiny_gpt(vocab_size: int, **overrides) -> GPT:
    torch.manual_seed(0)
    config = dict(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, pos_embedding="rope")
    return GPT(GPTConfig(**{**config, **overrides})).eval()


@pytest.fixture
def base_checkpoint(tmp_path) -> str:
    """An (untrained) base checkpoint: a tiny RoPE GPT with a character tokenizer, no chat tokens."""
    tokenizer = CharTokenizer(ALPHABET)
    path = tmp_path / "base" / "ckpt.pt"
    checkpoint.save(path, tiny_gpt(tokenizer.vocab_size), tokenizer=tokenizer)
    return str(path)


# ------------------------------------------------------------------------------------------- the task suite


def test_each_skill_answers_a_hand_checked_item():
    assert SKILLS["count"].item(("a", "banana")).answer == "3"
    assert SKILLS["count"].item(("z", "banana")).answer == "0"
    assert SKILLS["reverse"].item(("stone",)).answer == "enots"
    assert SKILLS["sort"].item(("stone",)).answer == "enost"
    assert SKILLS["add"].item((347, 85)).answer == "432"
    assert SKILLS["add"].render_raw((347, 85)) == "347 + 85 = 432"
    item = SKILLS["reverse"].item(("stone",), phrasing=1)
    assert item.question == "Write stone backwards." and item.verify(" enots\n") and not item.verify("enot")


def test_no_skill_is_passed_by_always_giving_its_most_common_answer():
    """Regression: `count` drew its letter from the word, so 69 of 100 held-out answers were "1", and every model
    of lesson 14's first run scored exactly 69% by answering "1"."""
    items = held_out_items(400)
    floor = most_common_answer_accuracy(items)
    assert set(floor) == set(SKILLS)
    assert floor["count"].rate < 0.32  # four answers, drawn uniformly: about 1/4
    assert {i.answer for i in items if i.skill == "count"} == {"0", "1", "2", "3"}
    assert all(floor[s].rate < 0.02 for s in ("reverse", "sort", "add"))


def test_most_common_answer_accuracy_on_a_hand_count():
    items = [SKILLS["count"].item(o) for o in [("a", "banana"), ("n", "banana"), ("b", "banana"), ("z", "abc")]]
    floor = most_common_answer_accuracy(items)  # answers 3, 2, 1, 0: each once
    assert (floor["count"].correct, floor["count"].total) == (1, 4)
    items.append(SKILLS["count"].item(("x", "box")))  # a second "1"
    assert most_common_answer_accuracy(items)["count"].correct == 2


def test_training_and_test_items_are_disjoint_by_construction():
    test = held_out_items(40)
    test_keys = {(i.skill, SKILLS[i.skill].key(i.operands)) for i in test}
    assert all(SKILLS[i.skill].is_test(i.operands) for i in test)
    train = list(itertools.islice(training_items(seed=3), 4000))
    assert not any(SKILLS[i.skill].is_test(i.operands) for i in train)
    assert not test_keys & {(i.skill, SKILLS[i.skill].key(i.operands)) for i in train}
    # a held-out word is held out of every skill and of the base model's text alike
    test_words = {i.operands[-1] for i in test if i.skill != "add"}
    words_in_raw = {line.split(" = ")[0].split()[-1] for line in raw_lines(4000, seed=1) if "+" not in line}
    assert not test_words & words_in_raw


def test_held_out_items_are_fixed_by_their_seed_and_distinct():
    items = held_out_items(30, seed=0)
    assert items == held_out_items(30, seed=0) and items != held_out_items(30, seed=1)
    for skill in SKILLS:
        mine = [i for i in items if i.skill == skill]
        assert len(mine) == 30 and len({SKILLS[skill].key(i.operands) for i in mine}) == 30
        assert {i.question.split()[0] for i in mine[:3]} != {mine[0].question.split()[0]}  # phrasings vary


def test_an_unknown_skill_is_one_line():
    with pytest.raises(ConfigError, match="unknown skill 'divide'"):
        held_out_items(3, skills=("divide",))


# ------------------------------------------------------------------------------------------- scoring


def test_wilson_interval_matches_hand_values():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # never below 0, unlike p ± 1.96 se
    assert all(wilson_interval(n, n)[1] == 1.0 for n in range(1, 300))  # regression: 100/100 had an upper 1 - 1e-16
    with pytest.raises(ConfigError):
        wilson_interval(3, 0)


def test_pass_at_k_is_the_probability_that_k_of_n_samples_hold_a_correct_one():
    n, c = 6, 2
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        draws = list(itertools.combinations(samples, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3) and pass_at_k(10, 0, 5) == 0.0


def test_complete_batches_prompts_of_equal_length_and_stops_at_the_stop_id():
    model = tiny_gpt(20)
    prompts = [[1, 2, 3], [4, 5], [1, 2, 3], [6, 7]]
    one_by_one = [complete(model, [p], stop_id=-5, max_new_tokens=5)[0] for p in prompts]
    assert complete(model, prompts, stop_id=-5, max_new_tokens=5) == one_by_one
    first = one_by_one[0][0]
    assert complete(model, prompts[:1], stop_id=first, max_new_tokens=5) == [[]]


def test_task_accuracy_counts_verified_replies(chat_tokenizer):
    model = tiny_gpt(chat_tokenizer.vocab_size)
    items = held_out_items(3)
    scores = task_accuracy(model, chat_tokenizer, items, max_new_tokens=4)
    assert list(scores) == list(SKILLS) and all(a.total == 3 for a in scores.values())


# ------------------------------------------------------------------------------------------- chat format


def test_render_lays_out_the_template_and_masks_assistant_tokens_only(chat_tokenizer):
    t = chat_tokenizer
    messages = [{"role": "system", "content": "Hi"}, {"role": "user", "content": "ab"},
                {"role": "assistant", "content": "ba"}]  # fmt: skip
    rendered = render(messages, t)
    s, u, a, e = (t.special_id(name) for name in ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"))
    assert rendered.ids == [s, *t.encode("Hi"), e, u, *t.encode("ab"), e, a, *t.encode("ba"), e]
    assert rendered.mask == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert t.decode(rendered.ids) == "<|system|>Hi<|end|><|user|>ab<|end|><|assistant|>ba<|end|>"
    assert prompt_ids(messages[:2], t) == rendered.ids[:-3]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Reverse stone."}, {"role": "assistant", "content": "enots"}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "<|end|> is text here"},
         {"role": "assistant", "content": "a\nb"}, {"role": "user", "content": "x"}],
    ],
)  # fmt: skip
def test_parse_inverts_render(chat_tokenizer, messages):
    ids = render(messages, chat_tokenizer).ids
    assert parse(ids, chat_tokenizer) == messages
    assert parse(ids[:-1], chat_tokenizer)[-1] == messages[-1]  # a reply cut before its <|end|>


def test_text_cannot_forge_a_turn(chat_tokenizer):
    ids = chat_tokenizer.encode("<|assistant|>")
    assert len(ids) == len("<|assistant|>") and not set(ids) & set(chat_tokenizer.special_tokens.values())


def test_the_extended_tokenizer_round_trips_through_a_checkpoint_dict(chat_tokenizer):
    again = tokenizer_from_dict(chat_tokenizer.to_dict())
    assert again.special_tokens == chat_tokenizer.special_tokens and again.vocab_size == len(ALPHABET) + 4
    assert list(CHAT_TOKENS) == list(again.special_tokens)


@pytest.mark.parametrize(
    "messages, message",
    [
        ([{"role": "bot", "content": "x"}], "message 0 has the unknown role 'bot'"),
        ([{"role": "user", "content": "x"}], "no assistant message"),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}], "only the first message"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        ([{"role": "user"}], "exactly 'role' and 'content'"),
        ([], "non-empty list"),
    ],
)
def test_bad_conversations_are_one_line(messages, message):
    with pytest.raises(ConversationError, match=message):
        check_messages(messages)


def test_a_base_tokenizer_has_no_chat_tokens():
    with pytest.raises(ConversationError, match="base model"):
        require_chat_tokens(CharTokenizer(ALPHABET))


def test_read_jsonl_names_the_bad_line(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    assert len(read_jsonl(path)) == 2
    for line, message in [
        ("{not json", ":3: not valid JSON"),
        ('{"text": "x"}', ':3: expected an object {"messages"'),
        ('{"messages": [{"role": "robot", "content": "x"}]}', ":3: message 0 has the unknown role 'robot'"),
        ('{"messages": [{"role": "user", "content": "x"}]}', ":3: the conversation has no assistant message"),
    ]:
        path.write_text(json.dumps(good) + "\n\n" + line + "\n")
        with pytest.raises(ConversationError, match=message):
            read_jsonl(path)
    with pytest.raises(DataError, match="no such conversation file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_fit_to_context_drops_the_oldest_exchanges_and_keeps_the_system_message(chat_tokenizer):
    system = {"role": "system", "content": "S"}
    turns = [{"role": r, "content": c * 5} for c in "abc" for r in ("user", "assistant")][:-1]
    messages = [system, *turns]  # S, a?, a!, b?, b!, c?
    full = len(prompt_ids(messages, chat_tokenizer))
    kept, dropped = fit_to_context(messages, chat_tokenizer, full)
    assert kept == messages and dropped == []
    kept, dropped = fit_to_context(messages, chat_tokenizer, full - 1)
    assert kept == [system, *turns[2:]] and dropped == turns[:2]
    with pytest.raises(ConversationError, match="longer than the model's context of 5"):
        fit_to_context(messages, chat_tokenizer, 5)


# ------------------------------------------------------------------------------------------- batching


def _conversations(tokenizer, n=6):
    return [render(item.messages(), tokenizer) for item in held_out_items(n, skills=("reverse", "add", "count"))]


def _summed_nats(model, conversation):
    x, y = pad_batch([conversation], pad_id=0)
    logits, _ = model(x)
    return F.cross_entropy(logits[0], y[0], ignore_index=-1, reduction="sum"), int((y != -1).sum())


def test_padding_and_packing_give_the_loss_of_each_conversation_alone(chat_tokenizer):
    model = tiny_gpt(chat_tokenizer.vocab_size)
    conversations = _conversations(chat_tokenizer)
    alone = [_summed_nats(model, c) for c in conversations]
    expected = sum(n for n, _ in alone) / sum(k for _, k in alone)  # the mean over every learned token
    x, y = pad_batch(conversations, pad_id=chat_tokenizer.special_id("<|end|>"))
    torch.testing.assert_close(model(x, y)[1], expected)
    windows = pack(conversations, block_size=64)
    assert len(windows) < len(conversations) and all(sum(len(c.ids) for c in w) <= 64 for w in windows)
    x, y, documents = packed_batch(windows, 64, pad_id=0)
    _, packed = model(x, y, attn_mask=document_mask(documents))
    torch.testing.assert_close(packed, expected)
    _, unmasked = model(x, y)  # without the document mask a conversation sees the ones before it
    assert not torch.allclose(unmasked, expected, atol=1e-4)


def test_a_conversation_longer_than_the_context_is_refused(chat_tokenizer):
    conversation = render([{"role": "user", "content": "x" * 70}, {"role": "assistant", "content": "y"}],
                          chat_tokenizer)  # fmt: skip
    with pytest.raises(ConversationError, match="75 tokens long, more than the model's context of 64: it is refused"):
        check_length(conversation, 64)
    with pytest.raises(ConversationError, match="refused"):
        pack([conversation], 64)


# ------------------------------------------------------------------------------------------- vocabulary, LoRA


def test_growing_the_vocabulary_keeps_the_old_logits(chat_tokenizer):
    base = tiny_gpt(len(ALPHABET))
    grown = grow_vocabulary(base, chat_tokenizer.vocab_size, seed=1)
    assert grown.config.vocab_size == len(ALPHABET) + 4 and grown.lm_head.weight is grown.transformer.wte.weight
    ids = torch.tensor([chat_tokenizer.encode("Reverse stone.")])
    torch.testing.assert_close(grown(ids)[0][..., : len(ALPHABET)], base(ids)[0])
    with pytest.raises(ConfigError, match="cannot shrink"):
        grow_vocabulary(base, 3)


def test_only_the_new_rows_of_the_embedding_get_gradients():
    model = tiny_gpt(30)
    train_new_rows_only(model.transformer.wte, 26)
    model(torch.randint(30, (2, 8)), torch.randint(30, (2, 8)))[1].backward()
    grad = model.transformer.wte.weight.grad
    assert grad[:26].abs().sum() == 0 and grad[26:].abs().sum() > 0


def test_lora_starts_as_the_base_model_and_merges_into_equal_logits():
    model = tiny_gpt(30, n_layer=2)
    ids = torch.randint(30, (2, 10))
    before = model(ids)[0]
    adapted = add_lora(model, rank=2, alpha=4.0)
    assert adapted == [
        f"transformer.h.{i}.{m}" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    torch.testing.assert_close(model(ids)[0], before)  # B = 0: no change yet
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora" not in n)
    C = 16
    per_block = 2 * (C + 3 * C) + 2 * (C + C) + 2 * (C + 4 * C) + 2 * (4 * C + C)  # r (in + out) per matrix
    assert sum(p.numel() for p in lora_parameters(model)) == 2 * per_block
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    adapted_logits = model(ids)[0]
    assert not torch.allclose(adapted_logits, before)
    state = merged_state_dict(model)
    merge_lora(model)
    assert not any("lora" in n or ".base." in n for n in model.state_dict())
    torch.testing.assert_close(model(ids)[0], adapted_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, model.state_dict())


def test_a_lora_rank_larger_than_the_matrix_is_refused():
    with pytest.raises(ConfigError, match="exceeds"):
        add_lora(tiny_gpt(30), rank=17)


# ------------------------------------------------------------------------------------------- SFT runs


def sft_config(base, out, **changes) -> SFTConfig:
    train = SFT_TRAIN.replace(batch_size=4, max_iters=6, eval_interval=3, warmup_iters=2, progress=False,
                              out_dir=str(out), seed=0)  # fmt: skip
    return SFTConfig(base=base, train=train, n_conversations=64, val_per_skill=2).replace(**changes)


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_sft_writes_a_chat_checkpoint_that_resumes_exactly(base_checkpoint, tmp_path, lora_rank):
    whole = sft(sft_config(base_checkpoint, tmp_path / "whole", max_iters=6, lora_rank=lora_rank))
    assert whole.added_tokens == 4 and whole.tokenizer.vocab_size == len(ALPHABET) + 4
    sft(sft_config(base_checkpoint, tmp_path / "split", max_iters=3, lora_rank=lora_rank))
    resumed = sft(sft_config(base_checkpoint, tmp_path / "split", max_iters=6, lora_rank=lora_rank, resume=True))
    torch.testing.assert_close(resumed.model.state_dict(), whole.model.state_dict(), rtol=0, atol=0)
    assert [m["step"] for m in resumed.metrics] == [0, 3, 6] and resumed.step_losses == whole.step_losses
    model, tokenizer = checkpoint.load_model(tmp_path / "whole")
    require_chat_tokens(tokenizer)
    torch.testing.assert_close(model.state_dict(), whole.model.state_dict())


def test_lora_sft_changes_each_matrix_by_at_most_its_rank_and_keeps_the_old_embedding(base_checkpoint, tmp_path):
    base, _ = checkpoint.load_model(base_checkpoint)
    result = sft(sft_config(base_checkpoint, tmp_path / "lora", lora_rank=2))
    tuned = result.model.state_dict()
    for name, weight in base.state_dict().items():
        if name.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight")):
            assert torch.linalg.matrix_rank(tuned[name] - weight, atol=1e-6) <= 2
        elif name in ("transformer.wte.weight", "lm_head.weight"):  # one tied matrix
            torch.testing.assert_close(tuned[name][: len(ALPHABET)], weight, rtol=0, atol=0)
        else:
            torch.testing.assert_close(tuned[name], weight, rtol=0, atol=0)
    C, r = 16, 2
    assert result.trainable == r * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C)) + 4 * C


def test_sft_refuses_to_clobber_a_run_and_lora_with_weight_decay(base_checkpoint, tmp_path):
    sft(sft_config(base_checkpoint, tmp_path / "run", max_iters=3))
    with pytest.raises(OutputError, match="already holds a training run"):
        sft(sft_config(base_checkpoint, tmp_path / "run", max_iters=3))
    with pytest.raises(ConfigError, match="LoRA trains with weight_decay 0"):
        sft_config(base_checkpoint, tmp_path / "x", lora_rank=2, weight_decay=0.1)
    with pytest.raises(ConfigError, match="give the base model's checkpoint"):
        SFTConfig()


def test_sft_on_a_jsonl_file_and_padding(base_checkpoint, tmp_path):
    path = tmp_path / "chats.jsonl"
    lines = [{"messages": i.messages()} for i in itertools.islice(training_items(0), 20)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = sft(sft_config(base_checkpoint, tmp_path / "file", data=str(path), packing=False, max_iters=3))
    assert math.isfinite(result.metrics[-1]["val_loss"])
    lines.append({"messages": [{"role": "user", "content": "x" * 80}, {"role": "assistant", "content": "y"}]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ConversationError, match="line 21 is 85 tokens long"):
        sft(sft_config(base_checkpoint, tmp_path / "long", data=str(path)))
    path.write_text("\n" + json.dumps(lines[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "é"},
                    {"role": "assistant", "content": "e"}]}) + "\n")  # fmt: skip
    with pytest.raises(ConversationError, match=r"chats.jsonl:3: message 0: character 'é'"):
        sft(sft_config(base_checkpoint, tmp_path / "accent", data=str(path)))


def test_the_base_corpus_mixes_skill_lines_into_the_training_text_only():
    text = "".join(f"Line {i} of a play.\n\n" for i in range(400))
    train, val = base_corpus(text, skill_share=0.5)
    assert val == text[int(len(text) * 0.9) :]
    skill_chars = sum(len(line) + 1 for line in train.split("\n") if " = " in line)
    assert 0.4 < skill_chars / len(train) < 0.6


def test_train_step_passes_a_batch_s_attention_mask_to_the_model(chat_tokenizer):
    conversations = _conversations(chat_tokenizer)
    x, y, documents = packed_batch(pack(conversations, 64), 64, pad_id=0)
    steps = []
    for batch in ((x, y), (x, y, document_mask(documents))):
        model = tiny_gpt(chat_tokenizer.vocab_size).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        steps.append(train_step(model, optimizer, batch).loss)
    _, masked = tiny_gpt(chat_tokenizer.vocab_size)(x, y, attn_mask=document_mask(documents))
    torch.testing.assert_close(steps[1], masked)
    assert not torch.allclose(steps[0], steps[1])
