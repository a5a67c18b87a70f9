"""Baseline retrievers that r3mem's recall is measured against, over the same raw texts.

The dense one lives here; BM25 is `r3mem.bm25`, because the store's own `bm25` and
`hybrid` recall use it too. Both share one small interface: `add(text)` to index one more text, and
`search(query, k) -> [(index, score)]`, best first, indexes in insertion order.
"""
