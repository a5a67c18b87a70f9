"""Extractive decoding: the reader may only emit tokens that occur in the recalled texts.

The base instruct model answers over the recalled records as `r3mem.reader` does, under a
`LogitsProcessor` that masks every token the sources do not contain (each text tokenised whole,
and each of its words with and without a leading space), except end of turn and newline. The
answer then cannot name a dog the records never mention; whether it is *supported* is checked
afterwards by `r3mem.answers.grounding`.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from r3mem.api import R3Mem
from r3mem.bounds import deadline_processors
from r3mem.reader import question_prompt

# Copying is what makes an answer checkable; a 135M model copies more readily when told to.
EXTRACT_INSTRUCTION = "Answer the question with a short phrase copied from the context. Do not explain."
MAX_ANSWER_TOKENS = 16  # LoCoMo answers run to a few words; a longer span is rarely an answer
MAX_CONTEXT_TOKENS = 1536  # the free reader's window, so the two differ only in the constraint


def allowed_tokens(r3: R3Mem, texts: list[str]) -> set[int]:
    """Token ids the answer may use: the texts' own, their words' (with and without a leading
    space, punctuation stripped too), end of turn and newline."""
    allowed: set[int] = set()
    for text in texts:
        allowed.update(r3.tokenize(text))
        for word in text.split():
            for form in {word, word.strip(".,;:!?\"'()[]")} - {""}:
                allowed.update(r3.tokenize(form))
                allowed.update(r3.tokenize(" " + form))
    allowed.update(r3.tokenize("\n"))
    tok = r3.tokenizer
    allowed.update(i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int))
    return allowed


class SourceVocabulary(LogitsProcessor):
    """Masks every token outside `allowed` to -inf."""

    def __init__(self, allowed: set[int]) -> None:
        self.allowed = torch.tensor(sorted(allowed), dtype=torch.long)
        self._mask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._mask is None or self._mask.shape[-1] != scores.shape[-1]:
            keep = self.allowed[self.allowed < scores.shape[-1]].to(scores.device)
            self._mask = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
            self._mask[keep] = False
        return scores.masked_fill(self._mask, float("-inf"))  # type: ignore[return-value]


@torch.no_grad()
def _token_logprobs(r3: R3Mem, prompt: list[int], answer: list[int]) -> torch.Tensor:
    """log p(answer[i] | prompt, answer[:i]) under the base model, per answer token."""
    ids = torch.tensor([prompt + answer], device=r3.device)  # (1, P + A)
    with r3.network.adapter(None):
        logits = r3.network.causal_lm(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()  # (A, V)
    return F.log_softmax(logits, -1).gather(1, torch.tensor(answer, device=r3.device)[:, None])[:, 0]


def _first_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().split("\n")[0]).strip()


def _prompt(r3: R3Mem, texts: list[str], question: str) -> list[int]:
    return question_prompt(r3, "\n".join(texts), question, MAX_CONTEXT_TOKENS, EXTRACT_INSTRUCTION)


@torch.no_grad()
def extract(r3: R3Mem, texts: list[str], question: str, max_new_tokens: int = MAX_ANSWER_TOKENS) -> str:
    """Greedy answer over `texts` (joined, one per line) restricted to their tokens; its first line."""
    ids = torch.tensor([_prompt(r3, texts, question)], device=r3.device)
    eos = r3.tokenizer.eos_token_id
    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                pad_token_id=eos if eos is not None else 0)
    only_sources = LogitsProcessorList([SourceVocabulary(allowed_tokens(r3, texts)), *deadline_processors()])
    with r3.network.adapter(None):
        out = r3.network.causal_lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                            generation_config=settings, logits_processor=only_sources)
    generated = r3.tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True,
                                    clean_up_tokenization_spaces=False)
    return _first_line(str(generated))


def likelihood(r3: R3Mem, texts: list[str], question: str, answer: str) -> tuple[float, float]:
    """(mean log p of the answer's tokens given sources and question, that minus the same given the
    question alone): how likely the unconstrained model finds the answer, and how much the sources
    raised it."""
    answer_ids = r3.tokenize(answer)
    if not answer_ids:
        return float("-inf"), 0.0
    with_context = _token_logprobs(r3, _prompt(r3, texts, question), answer_ids)
    alone = _token_logprobs(r3, question_prompt(r3, "", question, instruction=EXTRACT_INSTRUCTION), answer_ids)
    return float(with_context.mean()), float((with_context - alone).mean())
