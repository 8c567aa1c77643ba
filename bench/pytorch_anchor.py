"""Issue 12's speed anchor, run beside mtrec's encoder: sentence-transformers on PyTorch CPU.

    PYTHON_WITH_TORCH bench/pytorch_anchor.py --model-dir DIR --texts FILE --vectors-out FILE.npy

Runs under its own interpreter (`bench/README.md` says how to make it: torch and
sentence-transformers, never in mtrec's environment), so it imports neither TensorFlow nor mtrec.
`bench/text_encoder.py --pytorch-python` starts it once per round, between its own timed passes,
and compares both speeds and both sets of vectors. Encodes the JSON list of texts in FILE with the
model in DIR (the files mtrec's encoder reads; nothing is downloaded), at the anchor's settings
(batch 32, max length 64, 2 threads unless told), after one warm-up batch; prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"  # the model comes from --model-dir, never from a hub

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--texts", required=True, help="a JSON list of strings")
    parser.add_argument("--vectors-out", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with open(args.texts) as f:
        texts = json.load(f)
    model = sentence_transformers.SentenceTransformer(args.model_dir, device="cpu")
    model.max_seq_length = args.max_length
    model.encode(texts[:args.batch_size], batch_size=args.batch_size)
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
    seconds = time.perf_counter() - started
    np.save(args.vectors_out, vectors.astype(np.float32))
    print(json.dumps({"texts_per_s": round(len(texts) / seconds, 1), "seconds": round(seconds, 2),
                      "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                      "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                      "max_length": args.max_length}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
