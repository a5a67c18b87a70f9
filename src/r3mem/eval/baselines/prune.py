"""Pruning baseline in the spirit of LLMLingua: keep the k most surprising tokens, let the LM refill.

Tokens the base LM predicts well carry little information, so dropping them should cost the
least; the base instruct model then restores the passage from what was kept. Scoring and
restoring both run the plain base LM (adapters off), so the baseline shares nothing learned
with r3mem: it is what the same model achieves at the same budget without a memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import GenerationConfig

NAME = "prune"
INSTRUCTION = (
    "You restore compressed text. The user gives the tokens that were kept from a passage, in their "
    "original order; predictable tokens were deleted. Write the full original passage and nothing else."
)

Scorer = Callable[[object, Sequence[int]], Sequence[float]]


def surprisals(logits: torch.Tensor, ids: Sequence[int]) -> list[float]:
    """-ln p(ids[t] | ids[<t]) in nats, where `logits[t]` (T, V) is the prediction for `ids[t]`."""
    logp = F.log_softmax(logits.float(), dim=-1)
    target = torch.as_tensor(list(ids), dtype=torch.long, device=logits.device)
    return (-logp.gather(1, target[:, None])[:, 0]).tolist()


@torch.no_grad()
def score_tokens(r3, ids: Sequence[int]) -> list[float]:
    """Each token's surprisal under the base LM; a BOS/EOS token stands in as the first token's context."""
    tok = r3.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    prefix = [start] if start is not None else []
    x = torch.tensor([prefix + list(ids)], device=r3.device)
    with r3.network.adapter(None):
        logits = r3.network.causal_lm(input_ids=x, use_cache=False).logits[0]  # (P+T, V)
    if not prefix:  # nothing predicts the first token: keep it by giving it infinite surprisal
        return [float("inf")] + surprisals(logits[:-1], ids[1:])
    return surprisals(logits[:-1], ids)


def select(scores: Sequence[float], k: int) -> list[int]:
    """Positions of the k highest scores, in original order; ties go to the earlier position."""
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(ranked[: max(0, k)])


def compress(r3, ids: Sequence[int], k: int, scorer: Scorer = score_tokens) -> list[int]:
    """The stored form: the k most surprising token ids, in their original order."""
    return [ids[i] for i in select(scorer(r3, ids), k)]


def _prompt_ids(r3, kept_text: str) -> list[int]:
    user = f"Kept tokens:\n{kept_text}\n\nRestore the full original passage."
    tok = r3.tokenizer
    if getattr(tok, "chat_template", None):
        messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": user}]
        encoded = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    return r3.tokenize(f"{INSTRUCTION}\n{user}\nPassage:")  # models without a chat template (tests)


@torch.no_grad()
def expand(r3, kept: Sequence[int], n_tokens: int) -> list[int]:
    """Greedy generation by the base instruct model, up to the segment's length in tokens."""
    ids = torch.tensor([_prompt_ids(r3, r3.detokenize(list(kept)))], device=r3.device)
    eos = r3.tokenizer.eos_token_id
    settings = GenerationConfig(max_new_tokens=n_tokens, do_sample=False, eos_token_id=eos,
                                pad_token_id=eos if eos is not None else 0)
    with r3.network.adapter(None):
        out = r3.network.causal_lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                            generation_config=settings)
    generated = out[0, ids.shape[1]:].tolist()
    return [t for t in generated if t != eos][:n_tokens]
