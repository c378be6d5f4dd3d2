"""attnkit.models.GPT written in PyTorch, for benchmarks that compare the two.

The model lives in the package (``attnkit._torch_gpt``, so that ``attnkit
bench`` has it in an installed wheel too); this module re-exports it for the
bench scripts: ``GPTConfig``, ``GPT`` (same parameter names and layout as
attnkit's, SDPA attention, ``generate`` with preallocated KV caches),
``KVCache``, ``copy_from_attnkit(torch_model, attnkit_model)`` and
``copy_to_attnkit(attnkit_model, torch_model)``.

    python bench/torch_gpt.py --check     # copies an attnkit GPT's weights, compares logits and gradients
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit._torch_gpt import GPT, copy_from_attnkit


def check(seed: int = 0) -> bool:
    """Builds a small attnkit GPT, copies it into this model, and compares
    logits, the loss gradient of every parameter, and greedy cached decoding
    with uncached attnkit forwards. Returns True when all agree."""
    import numpy as np

    import attnkit
    import attnkit.nn.functional as AF
    from attnkit.models import GPT as AttnkitGPT
    from attnkit.models import GPTConfig as AttnkitConfig

    attnkit.manual_seed(seed)
    config = AttnkitConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=64, dropout=0.0, bias=True)
    ours = AttnkitGPT(config)
    theirs = GPT(config)
    copy_from_attnkit(theirs, ours)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(3, 17))
    targets = rng.integers(0, config.vocab_size, size=(3, 17))
    ok = True

    def compare(what, a, b, tolerance):
        nonlocal ok
        scale = max(float(np.abs(b).max()), 1e-30)
        error = float(np.abs(a - b).max()) / scale
        passed = error <= tolerance
        ok &= passed
        print(f"{what:<44} max |diff| / max |torch| = {error:.2e}  {'ok' if passed else 'MISMATCH'}")

    logits = ours(attnkit.tensor(idx))
    loss = AF.cross_entropy(logits.reshape(-1, config.vocab_size), attnkit.tensor(targets).reshape(-1))
    loss.backward()
    torch_logits = theirs(torch.from_numpy(idx))
    torch_loss = F.cross_entropy(torch_logits.reshape(-1, config.vocab_size), torch.from_numpy(targets).reshape(-1))
    torch_loss.backward()
    # float32 results of different summation orders: a few ulps of the largest value
    compare("logits", logits.detach().numpy(), torch_logits.detach().numpy(), 1e-5)
    compare("loss", np.array(loss.item()), np.array(torch_loss.item()), 1e-5)
    torch_grads = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        compare(f"grad {name}", param.grad.numpy(), torch_grads[name].grad.numpy(), 1e-4)

    # Greedy cached decoding against repeated full attnkit forwards.
    prompt = idx[:2, :5]
    generated = theirs.generate(torch.from_numpy(prompt), 10).numpy()
    sequence = prompt.copy()
    with attnkit.no_grad():
        for _ in range(10):
            next_logits = ours(attnkit.tensor(sequence)).numpy()[:, -1]
            sequence = np.concatenate([sequence, next_logits.argmax(-1)[:, None]], axis=1)
    same = bool((generated == sequence).all())
    ok &= same
    print(f"{'greedy cached decode == attnkit full forwards':<44} {'ok' if same else 'MISMATCH'}")
    return ok


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with attnkit.models.GPT on copied weights (logits, gradients, decoding)",
    )
    arguments = parser.parse_args()
    if not arguments.check:
        parser.print_help()
        sys.exit(0)
    sys.exit(0 if check() else 1)
