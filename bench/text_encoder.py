"""Speed of the MiniLM sentence encoder (mtrec.text.minilm), as a bare call and inside the
TextEmbedder's Beam job, on this machine.

    python bench/text_encoder.py --out bench/results/text_encoder.json [--texts 2048]

Encodes seeded product titles of 6-14 words (the issue's anchor: sentence-transformers on PyTorch
CPU, about 283 such titles/s at batch 32, max length 64, 2 threads) at every batch size x max
length, and writes texts/s, tokens/s (non-padding tokens) and the process's peak RSS.
Tokenization is included: it is part of what a caller waits for. The bare call is timed after one
warm-up pass; the Beam figure is the TextEmbedder's whole job on an items table of those titles
(`embed_tables` on DirectRunner, no cache: reading, loading the encoder, encoding, writing), what
a pipeline run pays.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtrec.text.minilm import SentenceEncoder  # noqa: E402

PYTORCH_ANCHOR_TEXTS_PER_S = 283  # sentence-transformers, batch 32, max length 64, 2 threads (issue 12)
PYTORCH_ANCHOR_MEASURED = "2026-12-01"  # machines here vary 2x between days: a ratio holds for that day only
WORDS = ("wireless organic stainless vintage compact portable premium classic ergonomic waterproof handmade "
         "bluetooth ceramic leather cotton bamboo kids travel kitchen garden office gaming outdoor winter summer "
         "headphones teapot backpack lamp blender jacket notebook speaker kettle mug charger sneakers blanket "
         "with for and set of pack 2 3 10 100 inch black white green blue large small").split()


def titles(count: int, seed: int = 0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() for _ in range(count)]


def measure(texts, batch_size: int, max_length: int) -> dict:
    encoder = SentenceEncoder(max_length=max_length, batch_size=batch_size)
    encoder.encode(texts[:batch_size])  # the one trace
    tokens = sum(len(encoder.tokenizer.ids(t)) for t in texts)
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - started
    assert vectors.shape == (len(texts), encoder.dimension) and np.all(np.isfinite(vectors))
    return {"batch_size": batch_size, "max_length": max_length, "texts_per_s": round(len(texts) / seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 2)}


def measure_in_beam(texts, batch_size: int, max_length: int) -> dict:
    import tempfile

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from mtrec.components.text_embedder import embed_tables

    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "items.jsonl"), "w") as f:
            f.writelines(json.dumps({"item_id": f"i{i}", "title": t}) + "\n" for i, t in enumerate(texts))
        started = time.perf_counter()
        counts = embed_tables(lambda: beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"])),
                              root, "jsonl", {"items": ["title"]}, os.path.join(root, "out"),
                              max_length=max_length, batch_size=batch_size)
        seconds = time.perf_counter() - started
    assert counts["texts_encoded"] == len(set(texts)), counts
    return {"batch_size": batch_size, "max_length": max_length, "texts_per_s": round(len(set(texts)) / seconds, 1),
            "seconds": round(seconds, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--max-lengths", default="32,64,128")
    args = parser.parse_args(argv)
    texts = titles(args.texts)
    rows = []
    for batch_size, max_length in itertools.product(map(int, args.batch_sizes.split(",")),
                                                    map(int, args.max_lengths.split(","))):
        rows.append(measure(texts, batch_size, max_length))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    in_beam = []
    for batch_size, max_length in itertools.product(map(int, args.batch_sizes.split(",")),
                                                    map(int, args.max_lengths.split(","))):
        in_beam.append(measure_in_beam(texts, batch_size, max_length))
        print(json.dumps({"in_beam": in_beam[-1]}), file=sys.stderr, flush=True)
    anchor = next((r for r in rows if r["batch_size"] == 32 and r["max_length"] == 64), None)
    report = {"texts": args.texts, "cores": os.cpu_count(), "tensorflow": tf.__version__,
              "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                          "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
              "results": rows, "in_beam": in_beam, "pytorch_anchor_texts_per_s": PYTORCH_ANCHOR_TEXTS_PER_S,
              "pytorch_anchor_measured": PYTORCH_ANCHOR_MEASURED, "measured": time.strftime("%Y-%m-%d"),
              "vs_pytorch_at_32_64": round(anchor["texts_per_s"] / PYTORCH_ANCHOR_TEXTS_PER_S, 2) if anchor else None,
              "goal_vs_pytorch": 1.5,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"Wrote {args.out}: {report['vs_pytorch_at_32_64']}x the PyTorch anchor at batch 32, length 64",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
