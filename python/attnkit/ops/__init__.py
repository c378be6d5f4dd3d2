"""Tensor-level ops, below ``nn``: arithmetic, comparisons and reductions
(elementwise.py), shapes and indexing (shape.py), matrix products, and the
argument checks every op shares (checks.py). ``Tensor``'s operators and
methods call them; ``nn.functional`` re-exports them under PyTorch's names."""
