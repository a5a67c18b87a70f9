"""Token-budget baselines for `r3mem eval reconstruct`: each has `compress(r3, ids, k)`, `expand(r3, kept, n)`."""
