"""Training recipe: retention, reversible retrieval, hierarchy and cycle losses on Accelerate."""
