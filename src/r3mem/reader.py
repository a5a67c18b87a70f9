"""Answering a question from raw text (base instruct model) or from memory vectors.

Both readers use the same instruction and greedy decoding, so a difference between
methods is the context's, not the prompt's.
"""

from __future__ import annotations

from typing import cast

import torch
from transformers import BatchEncoding, GenerationConfig, LogitsProcessorList

from r3mem.api import R3Mem
from r3mem.bounds import deadline_processors

INSTRUCTION = "Answer the question with a short phrase. Do not explain."


def _chat_ids(r3: R3Mem, user: str, instruction: str = INSTRUCTION) -> list[int]:
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": user}]
    tok = r3.tokenizer
    if getattr(tok, "chat_template", None):
        encoded = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(cast(BatchEncoding, encoded)["input_ids"])  # return_dict=True gives a BatchEncoding
    return r3.tokenize(f"{instruction}\n{user}\nAnswer:")


def question_prompt(r3: R3Mem, context: str, question: str, max_context_tokens: int = 1536,
                    instruction: str = INSTRUCTION) -> list[int]:
    """The reader's prompt ids: `context` (its last `max_context_tokens`) beside the question, or
    the question alone when `context` is empty."""
    ctx_ids = r3.tokenize(context)[-max_context_tokens:] if context else []
    user = (f"Context:\n{r3.detokenize(ctx_ids)}\n\nQuestion: {question}" if ctx_ids else f"Question: {question}")
    return _chat_ids(r3, user, instruction)


def _settings(r3: R3Mem, max_new_tokens: int) -> GenerationConfig:
    eos = r3.tokenizer.eos_token_id
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                            pad_token_id=eos if eos is not None else 0)


def _decode(r3: R3Mem, ids: list[int]) -> str:
    """Generated text without special tokens: the end-of-turn token is not part of an answer."""
    text = r3.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return cast(str, text)  # a flat id list decodes to one string


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


@torch.no_grad()
def _answer(r3: R3Mem, context: str, question: str, max_new_tokens: int, max_context_tokens: int) -> str:
    ids = torch.tensor([question_prompt(r3, context, question, max_context_tokens)], device=r3.device)
    with r3.network.adapter(None):
        out = r3.network.causal_lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                            generation_config=_settings(r3, max_new_tokens),
                                            logits_processor=LogitsProcessorList(deadline_processors()))
    return _decode(r3, out[0, ids.shape[1]:].tolist())


def answer_from_text(r3: R3Mem, context: str, question: str, max_new_tokens: int = 24,
                     max_context_tokens: int = 1536) -> str:
    """The base model (adapters off) reads `context` (truncated from the left) and answers."""
    return _first_line(_answer(r3, context, question, max_new_tokens, max_context_tokens))


@torch.no_grad()
def answer_from_memory(r3: R3Mem, memory: torch.Tensor, question: str, max_new_tokens: int = 24) -> str:
    """The expand adapter reads `[memory (n, d) ; continue marker ; question prompt]` and answers.

    `memory` is one or more snapshots flattened to (n, d): the memory tokens stand in for
    the context, so the prompt costs n positions instead of the raw text's length.
    """
    net = r3.network
    q_ids = torch.tensor([_chat_ids(r3, f"Question: {question}")], device=r3.device)
    mem = memory.to(r3.device, net.embed_dtype).unsqueeze(0)  # (1, n, d)
    prefix = net.read_inputs(mem, "continue", net.embed(q_ids))  # (1, n + 1 + q, d)
    mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
    with net.adapter("expand"):
        out = net.causal_lm.generate(inputs_embeds=prefix, attention_mask=mask,
                                     generation_config=_settings(r3, max_new_tokens))
    return _first_line(_decode(r3, out[0].tolist()))

