"""Post-training: from a base model that continues text to an assistant that answers (lesson 14).

tasks        skills a program can check             SKILLS, TaskItem, training_items, held_out_items, raw_lines
scoring      accuracy with intervals, pass@k        task_accuracy, Accuracy, wilson_interval, pass_at_k, answer,
                                                    most_common_answer_accuracy
chat         the chat format                        render, parse, prompt_ids, read_jsonl, fit_to_context,
                                                    add_chat_tokens, CHAT_TOKENS
batching     conversations into batches             pad_batch, pack, packed_batch
vocabulary   room for the chat tokens               grow_vocabulary, train_new_rows_only
lora         low-rank adapters                      add_lora, merge_lora, LoRALinear
sft          supervised fine-tuning                 SFTConfig, sft (through `train`'s loop and `train_step`)
recipe       the lesson's base and SFT models       base_corpus, pretrain_base, lesson_sft_model
rollouts     sampled answers, rewards, log-probs    rollout, Rollouts, sequence_batch, token_logprobs
grpo         group-relative policy optimisation     group_advantages, clipped_objective, kl_k3, grpo_loss,
                                                    GRPOTargets, GRPOObjective (through `train_step`)
dpo          direct preference optimisation         dpo_loss, preference_pairs, DPOTargets, DPOObjective
"""

from scratchlm.posttraining.batching import IGNORE, check_length, example, pack, packed_batch, pad_batch
from scratchlm.posttraining.chat import (
    CHAT_TOKENS,
    END,
    ROLE_TOKENS,
    ROLES,
    Rendered,
    add_chat_tokens,
    check_messages,
    fit_to_context,
    has_chat_tokens,
    parse,
    prompt_ids,
    read_jsonl,
    render,
    require_chat_tokens,
)
from scratchlm.posttraining.dpo import DPOObjective, DPOStats, DPOTargets, dpo_loss, preference_pairs
from scratchlm.posttraining.grpo import (
    GRPOObjective,
    GRPOTargets,
    clipped_objective,
    group_advantages,
    grpo_loss,
    kl_k3,
    masked_mean,
)
from scratchlm.posttraining.lora import (
    LoRALinear,
    add_lora,
    lora_parameters,
    merge_lora,
    merged_state_dict,
    trainable_parameters,
)
from scratchlm.posttraining.rollouts import (
    Rollouts,
    SequenceBatch,
    masked_logprobs,
    rollout,
    sequence_batch,
    token_logprobs,
)
from scratchlm.posttraining.scoring import (
    Accuracy,
    accuracy_by_skill,
    answer,
    complete,
    most_common_answer_accuracy,
    pass_at_k,
    pass_at_k_by_skill,
    task_accuracy,
    wilson_interval,
)
from scratchlm.posttraining.sft import (
    SFT_TRAIN,
    SFTConfig,
    SFTData,
    SFTResult,
    SFTRun,
    conversation_loss,
    count_trainable,
    merged_copy,
    prepare_sft,
    sft,
    sft_data,
)
from scratchlm.posttraining.tasks import SKILLS, Skill, TaskItem, held_out_items, raw_lines, training_items
from scratchlm.posttraining.vocabulary import grow_vocabulary, train_new_rows_only

__all__ = [
    "CHAT_TOKENS",
    "END",
    "IGNORE",
    "ROLES",
    "ROLE_TOKENS",
    "SFT_TRAIN",
    "SKILLS",
    "Accuracy",
    "DPOObjective",
    "DPOStats",
    "DPOTargets",
    "GRPOObjective",
    "GRPOTargets",
    "LoRALinear",
    "Rendered",
    "Rollouts",
    "SFTConfig",
    "SFTData",
    "SFTResult",
    "SFTRun",
    "SequenceBatch",
    "Skill",
    "TaskItem",
    "accuracy_by_skill",
    "add_chat_tokens",
    "add_lora",
    "answer",
    "check_length",
    "check_messages",
    "clipped_objective",
    "complete",
    "conversation_loss",
    "count_trainable",
    "dpo_loss",
    "example",
    "fit_to_context",
    "group_advantages",
    "grow_vocabulary",
    "grpo_loss",
    "has_chat_tokens",
    "held_out_items",
    "kl_k3",
    "lora_parameters",
    "masked_logprobs",
    "masked_mean",
    "merge_lora",
    "merged_copy",
    "merged_state_dict",
    "most_common_answer_accuracy",
    "pack",
    "packed_batch",
    "pad_batch",
    "parse",
    "pass_at_k",
    "pass_at_k_by_skill",
    "preference_pairs",
    "prepare_sft",
    "prompt_ids",
    "raw_lines",
    "read_jsonl",
    "render",
    "require_chat_tokens",
    "rollout",
    "sequence_batch",
    "sft",
    "sft_data",
    "task_accuracy",
    "token_logprobs",
    "train_new_rows_only",
    "trainable_parameters",
    "training_items",
    "wilson_interval",
]
