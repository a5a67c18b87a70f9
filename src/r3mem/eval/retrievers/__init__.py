"""Baseline retrievers that r3mem's recall is measured against, over the same raw texts.

Both share one small interface: `add(text)` to index one more text, and
`search(query, k) -> [(index, score)]`, best first, indexes in insertion order.
"""
