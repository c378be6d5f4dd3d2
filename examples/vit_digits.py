"""Trains a small Vision Transformer on scikit-learn's bundled 8x8 handwritten
digits and reports its test accuracy.

    pip install "attnkit[vision]"     # scikit-learn, for the data set
    python examples/vit_digits.py

1,797 grayscale 8x8 images of the digits 0-9 (pixel values 0-16), split
80/20 at random (stratified) into 1,437 training and 360 test images. The
ViT cuts each image into 2x2 patches (16 of them, plus [CLS]), with 4
pre-LN blocks of width 64 and 4 heads, dropout 0.1; AdamW with a warmup
of one epoch and a cosine decay over 40 epochs. It reaches 95-97% test
accuracy (seeds 0, 1, 2: 96.7%, 95.8%, 96.7%) in two to three minutes.
"""

import argparse
import time

import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit.models import ViT, ViTConfig


def load_digits_split(seed):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise SystemExit("this example needs scikit-learn: pip install 'attnkit[vision]'") from error
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0 - 0.5) / 0.5  # to [-1, 1]
    images = images[:, None, :, :]  # [N, 1, 8, 8]
    return train_test_split(images, digits.target, test_size=0.2, random_state=seed, stratify=digits.target)


def accuracy(model, images, labels, batch=256):
    model.eval()
    correct = 0
    with attnkit.no_grad():
        for start in range(0, len(images), batch):
            logits = model(attnkit.from_numpy(np.ascontiguousarray(images[start : start + batch])))
            correct += int((logits.numpy().argmax(axis=1) == labels[start : start + batch]).sum())
    model.train()
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch-size", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    args = parser.parse_args()

    x_train, x_test, y_train, y_test = load_digits_split(args.seed)
    attnkit.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = ViTConfig(
        image_size=8,
        patch_size=args.patch_size,
        num_channels=1,
        num_classes=10,
        n_layer=4,
        n_head=4,
        n_embd=64,
        d_ff=128,
        dropout=args.dropout,
    )
    model = ViT(config)
    print(f"ViT: {model.num_parameters():,} parameters; {len(x_train)} training and {len(x_test)} test images")
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    total = args.epochs * steps_per_epoch
    optimizer = attnkit.optim.AdamW(
        attnkit.optim.weight_decay_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.99)
    )
    scheduler = attnkit.optim.WarmupCosineLR(optimizer, steps_per_epoch, total, min_lr_ratio=0.05)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        images = x_train[order]
        labels = y_train[order]
        losses = []
        for first in range(0, len(images), args.batch_size):
            x = attnkit.from_numpy(np.ascontiguousarray(images[first : first + args.batch_size]))
            y = attnkit.from_numpy(labels[first : first + args.batch_size].astype(np.int64))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            attnkit.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            print(
                f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, test accuracy "
                f"{accuracy(model, x_test, y_test):.2%} ({time.perf_counter() - start:.0f} s)"
            )
    final = accuracy(model, x_test, y_test)
    print(f"test accuracy {final:.2%} after {args.epochs} epochs, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
