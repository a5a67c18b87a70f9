"""Probe activation-memory variants on the tuning texts (none held out): memory - window at history 4,096.

A re-implementation of `r3mem.activation_memory.fold` with switches, for the probes in
docs/retention.md ("Second round"); its `{"place": "contiguous", "bias": 1.0, "observe": 32}`
reproduces the memory shipped before `reach`, and `"far": 128` the shipped `reach = 128`.

    .venv/bin/python scripts/probe_activation_memory.py '{"name": {"place": "contiguous", "bias": 1.0,
        "observe": 32, "far": 128}}' THREADS

Switches: place ("contiguous" | "true" with "clip"), bias, observe, far (the reach), recent (share
of the budget for the newest entries), merge (evicted values averaged into the nearest kept key).
Data: `$R3MEM_DATA` or ../shared/data.
"""

import json
import math
import statistics
import sys
import time

import torch
from transformers import DynamicCache

from r3mem.activation_memory import _rotate, eager_attention
from r3mem.api import R3Mem
from r3mem.eval.perplexity import TARGET_LEN, load_texts, target_positions
from r3mem.retention_data import data_dir

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
D = str(data_dir())
TEXTS = ",".join(
    [
        f"{D}/books/chesterton-ball.txt",
        f"{D}/books/shakespeare-hamlet.txt",
        *(f"{D}/locomo/locomo_dev.json#{c}" for c in ("conv-26", "conv-30", "conv-41")),
    ]
)
H, W, K, PER = 4096, 512, 64, 3
TAIL = W - K
r3 = R3Mem.load(device="cpu")
lm = r3.network.causal_lm
inv = lm.model.rotary_emb.inv_freq
KVH = lm.config.num_key_value_heads


def rot(keys, pos):  # keys (h, n, d) at position 0 -> at pos (h, n)
    return _rotate(keys, pos, inv)


class Mem:
    def __init__(s):
        s.k = []
        s.v = []
        s.pos = None
        s.mass = []

    @property
    def m(s):
        return 0 if s.pos is None else s.pos.shape[1]


def placement(mem, start_pos_abs, v):
    """(h, m) reader positions of the memory entries, and the first position of what follows."""
    m = mem.m
    if v["place"] == "contiguous":
        rank = mem.pos.argsort(-1).argsort(-1)  # entries are kept sorted, but be safe
        return rank.float(), m
    C = v["clip"]
    dist = (start_pos_abs - mem.pos).clamp(max=C).float()
    return (C - dist), C


def build_cache(mem, positions):
    cache = DynamicCache()
    for layer in range(len(mem.k)):
        cache.update(rot(mem.k[layer][0], positions).unsqueeze(0), mem.v[layer], layer)
    return cache


def mask_for(mem, L, v, dtype, bias_cols=True):
    m = mem.m
    mask = torch.full((L, m + L), float("-inf")).triu(m + 1)
    if m and v["bias"]:
        mask[:, 1:m] -= v["bias"]  # the sink is entry 0 (the oldest)
    return mask.to(dtype)[None, None]


@torch.no_grad()
def fold(mem, seg, seg_abs, v):
    ids = torch.tensor([seg])
    m = mem.m
    if m:
        pos, first = placement(mem, seg_abs, v)
        cache = build_cache(mem, pos)
    else:
        pos, first, cache = None, 0, DynamicCache()
    L = len(seg)
    with eager_attention(lm):
        out = lm(
            input_ids=ids,
            cache=cache,
            position_ids=torch.arange(first, first + L).view(1, -1),
            output_attentions=True,
            use_cache=True,
        )
    new = Mem()
    seg_pos_abs = torch.arange(seg_abs, seg_abs + L)
    allpos = torch.cat([mem.pos, seg_pos_abs.expand(KVH, L)], 1) if m else seg_pos_abs.expand(KVH, L)
    reader_pos = (
        torch.cat([pos, torch.arange(first, first + L).float().expand(KVH, L)], 1)
        if m
        else torch.arange(0, L).float().expand(KVH, L)
    )
    budget, recent = K, int(K * v.get("recent", 0.5))
    for li, (layer, att) in enumerate(zip(out.cache.layers, out.attentions, strict=True)):
        k, vv = layer.keys[0], layer.values[0]  # rotated at reader positions
        n = k.shape[1]
        kraw = rot(k, -reader_pos)
        obs = att[0, :, -v["observe"] :].float()  # (heads, q, n)
        if v.get("far"):
            q_abs = torch.arange(seg_abs + L - v["observe"], seg_abs + L)  # stream positions of the queries
            near = (q_abs[None, :, None] - allpos[:, None, :]) < v["far"]  # (kvh, q, n)
            near = near.repeat_interleave(obs.shape[0] // KVH, 0)
            obs = obs.masked_fill(near, 0.0)
        scores = obs.reshape(KVH, -1, n).sum(1)
        if n <= budget:
            idx = torch.arange(n).expand(KVH, n)
        else:
            r = scores.clone()
            r[:, 0] = float("inf")
            if recent:
                r[:, n - recent :] = float("inf")
            idx = torch.topk(r, budget, -1).indices.sort(-1).values
        g = idx.unsqueeze(-1).expand(-1, -1, k.shape[-1])
        keep_k, keep_v = kraw.gather(1, g), vv.gather(1, g)
        if v.get("merge") and n > budget:
            mass_prev = mem.mass[li] if m else None
            mass = torch.cat([mass_prev, scores[:, m:]], 1) if m else scores.clone()
            mass = mass + 1e-4
            keep = torch.zeros(KVH, n, dtype=torch.bool)
            keep.scatter_(1, idx, True)
            for h in range(KVH):
                ev = (~keep[h]).nonzero()[:, 0]
                kept = idx[h]
                if len(ev) == 0:
                    continue
                kn = torch.nn.functional.normalize(kraw[h], dim=-1)
                sim = kn[ev] @ kn[kept].T  # (e, b)
                sim[:, 0] = -2  # never into the sink
                if v.get("merge_skip_recent"):
                    sim[:, budget - recent :] = -2
                tgt = sim.argmax(-1)
                mk = mass[h, kept].clone()
                vk = keep_v[h] * mk[:, None]
                vk.index_add_(0, tgt, vv[h, ev] * mass[h, ev][:, None])
                mk.index_add_(0, tgt, mass[h, ev])
                keep_v[h] = vk / mk[:, None]
                new_mass = mk
                if h == 0:
                    nm = []
                nm.append(new_mass)
            new.mass.append(torch.stack(nm))
        elif v.get("merge"):
            mass_prev = mem.mass[li] if m else None
            mass = torch.cat([mass_prev, scores[:, m:]], 1) if m else scores.clone()
            new.mass.append(mass.gather(1, idx) + 1e-4)
        new.k.append(keep_k.unsqueeze(0))
        new.v.append(keep_v.unsqueeze(0))
        if li == 0:
            new.pos = allpos.gather(1, idx)
    return new


@torch.no_grad()
def nll_after(mem, context, target, ctx_abs, v):
    ids = torch.tensor([list(context) + list(target)])
    L = ids.shape[1]
    if mem is not None and mem.m:
        pos, first = placement(mem, ctx_abs, v)
        cache = build_cache(mem, pos)
        mask = mask_for(mem, L, v, torch.float32)
    else:
        first, cache, mask = 0, DynamicCache(), None
    logits = lm(
        input_ids=ids,
        cache=cache,
        attention_mask=mask,
        position_ids=torch.arange(first, first + L).view(1, -1),
        use_cache=True,
    ).logits
    scored = logits[0, L - len(target) : -1].float()
    return float(torch.nn.functional.cross_entropy(scored, ids[0, -len(target) + 1 :]).item())


VARIANTS = json.loads(sys.argv[1])
texts = load_texts(TEXTS)
rows = {name: [] for name in VARIANTS}
t0 = time.time()
with r3.network.adapter(None):
    for tname, text in texts.items():
        ids = r3.tokenize(text)
        for p in target_positions(len(ids), H, 2048, PER, 128, TAIL):
            target = ids[p : p + TARGET_LEN]
            w = nll_after(None, ids[p - W : p], target, 0, {})
            for name, v in VARIANTS.items():
                mem = Mem()
                start = p - H
                end = p - TAIL
                start += (end - start) % 128
                for s in range(start, end, 128):
                    mem = fold(mem, ids[s : s + 128], s, v)
                mnll = nll_after(mem, ids[p - TAIL : p], target, p - TAIL, v)
                rows[name].append(mnll - w)
            print(tname, p, {n: round(r[-1], 4) for n, r in rows.items()}, round(time.time() - t0), flush=True)
for name, d in rows.items():
    mu = statistics.fmean(d)
    hw = 1.96 * statistics.stdev(d) / math.sqrt(len(d))
    books = statistics.fmean(d[: 2 * PER])
    convs = statistics.fmean(d[2 * PER :])
    print(f"{name}: {mu:+.4f} ± {hw:.4f}  books {books:+.4f} convs {convs:+.4f}  n={len(d)}")
