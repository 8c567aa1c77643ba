"""The MiniLM encoder and its tokenizer against the reference implementation's own outputs
(../shared/text/minilm_reference.json: sentence-transformers on PyTorch), and `mtrec embed`."""
import csv
import json
import os
import random
import shutil

import numpy as np
import pytest

from mtrec.cli import main as cli
from mtrec.text import minilm
from mtrec.text.embed import dead_letter_path
from mtrec.text.wordpiece import WordPieceTokenizer, normalize, split_words, words

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "text", "minilm_reference.json")
pytestmark = [pytest.mark.skipif(not os.path.exists(REFERENCE), reason=f"no reference embeddings at {REFERENCE}"),
              pytest.mark.xdist_group("minilm")]  # one worker: the encoder loads once


@pytest.fixture(scope="module")
def reference():
    with open(REFERENCE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def encoders():
    return {length: minilm.SentenceEncoder(max_length=length, batch_size=8) for length in (64, 128)}


def test_the_installed_weights_are_the_references(reference):
    assert reference["model_safetensors_sha256"] == minilm.MINILM_SHA256
    assert minilm.check_files(minilm.default_encoder_path()) == minilm.MINILM_SHA256


def test_every_reference_sentence_has_the_same_token_ids(reference, encoders):
    for entry in reference["entries"]:
        assert encoders[entry["max_length"]].tokenizer.ids(entry["text"]) == entry["token_ids"], entry["text"]


def test_every_reference_sentence_encodes_to_cosine_at_least_0_9999(reference, encoders):
    for length, encoder in encoders.items():
        entries = [e for e in reference["entries"] if e["max_length"] == length]
        # one padded batch of mixed lengths: padding must not change any text's vector
        vectors = encoder.encode([e["text"] for e in entries])
        expected = np.array([e["embedding"] for e in entries])
        cosine = np.sum(vectors * expected, axis=1) / np.linalg.norm(expected, axis=1)
        assert cosine.min() >= 0.9999, {e["text"]: c for e, c in zip(entries, cosine) if c < 0.9999}
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tokenizer_edge_cases(encoders):
    tokenizer = encoders[64].tokenizer
    vocab = tokenizer.vocab
    assert tokenizer.ids("") == [vocab["[CLS]"], vocab["[SEP]"]]
    assert tokenizer.ids("Café CRÈME façade") == tokenizer.ids("cafe creme facade")  # accents stripped, lowercased
    assert tokenizer.ids("e-mail!") == [vocab[t] for t in ("[CLS]", "e", "-", "mail", "!", "[SEP]")]
    assert len(tokenizer.ids("推荐系统")) == 2 + 4  # one token per ideograph, even without spaces
    assert tokenizer.ids("x" * 101)[1:-1] == [vocab["[UNK]"]]  # over 100 characters: one unknown word
    assert tokenizer.ids("tab\tand\u00a0no-break") == tokenizer.ids("tab and no-break")  # whitespace is a space
    assert tokenizer.ids("zero\u200bwidth") == tokenizer.ids("zerowidth")  # format characters are dropped
    long = tokenizer.ids("word " * 200)
    assert len(long) == 64 and long[-1] == vocab["[SEP]"]
    with pytest.raises(ValueError, match="max_length=1"):
        WordPieceTokenizer(os.path.join(minilm.default_encoder_path(), "vocab.txt"), max_length=1)


def test_ascii_text_takes_a_shorter_road_to_the_same_words():
    """`words` splits ASCII text with a regex, not the loop over characters: every ASCII character,
    controls and punctuation included, must land where the general road puts it."""
    rng = random.Random(0)
    alphabet = [chr(code) for code in range(128)] + ["Word", "ab", "  "] * 20
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert words(text) == split_words(normalize(text)), repr(text)


def test_missing_or_different_weights_are_refused_by_name(tmp_path):
    with pytest.raises(minilm.EncoderFilesError, match="missing config.json, vocab.txt, model.safetensors"):
        minilm.check_files(str(tmp_path))
    for name in ("config.json", "vocab.txt"):
        shutil.copy(os.path.join(minilm.default_encoder_path(), name), tmp_path / name)
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(minilm.EncoderFilesError, match="model.safetensors has sha256 .*expected 53aa5117"):
        minilm.check_files(str(tmp_path))
    with pytest.raises(ValueError, match="max_length=600: the encoder has 512 positions"):
        minilm.SentenceEncoder(max_length=600)


def test_embed_writes_every_row_in_order_and_dead_letters_the_unreadable(tmp_path, encoders, capsys):
    lines = [{"item_id": "a", "title": "Organic green tea, 100 bags"}, {"item_id": "b"},
             {"item_id": "c", "title": None}, "not json", {"item_id": "d", "title": 42},
             {"item_id": "e", "title": "Toy Story (1995)"}, {"item_id": "f", "title": "Organic green tea, 100 bags"}]
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "vectors.jsonl"
    assert cli(["embed", "--input", str(source), "--field", "title", "--out", str(out)]) == 0
    assert "3 rows embedded, 2 without 'title', 2 dead-lettered" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["item_id"] for r in rows] == ["a", "b", "c", "e", "f"]
    assert rows[1]["embedding"] is None and rows[2]["embedding"] is None
    expected = encoders[64].encode(["Organic green tea, 100 bags", "Toy Story (1995)"])
    np.testing.assert_allclose(rows[0]["embedding"], expected[0], atol=1e-6)
    np.testing.assert_allclose(rows[3]["embedding"], expected[1], atol=1e-6)
    assert rows[4]["embedding"] == rows[0]["embedding"]
    dead = [json.loads(line) for line in open(dead_letter_path(str(out)))]
    assert [(d["line"], d["reason"].split(":")[0]) for d in dead] == [(4, "bad JSON"), (5, "not text")]

    table = tmp_path / "items.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([["item_id", "title"], ["a", "Toy Story (1995)"], ["b", ""]])
    assert cli(["embed", "--input", str(table), "--field", "title", "--out", str(tmp_path / "t.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(rows[0]["embedding"], expected[1], atol=1e-6)
    assert rows[1] == {"item_id": "b", "title": None, "embedding": None}


def test_embed_names_a_field_no_row_has(tmp_path, capsys):
    source = tmp_path / "items.jsonl"
    source.write_text(json.dumps({"item_id": "a", "title": "tea"}) + "\n")
    assert cli(["embed", "--input", str(source), "--field", "titel", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "has the field 'titel'; fields seen: ['item_id', 'title']" in capsys.readouterr().err
