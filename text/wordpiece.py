"""BERT's uncased WordPiece tokenizer, as the model's own `tokenizer.json` configures it.

The same steps as Hugging Face's BertNormalizer, BertPreTokenizer and WordPiece model (what
sentence-transformers runs), in plain Python so that nothing but the vocabulary file is needed:

  normalise  drop control characters, turn whitespace into spaces, put spaces around CJK
             ideographs, strip accents (NFD, then no combining marks), lowercase;
  split      on whitespace, and every punctuation character is a word of its own;
  WordPiece  greedy longest match against the vocabulary, `##` marking a word's continuation;
             a word with no match, or longer than 100 characters, is [UNK].

Ids are [CLS] + pieces + [SEP], truncated to `max_length` (the two markers included). Checked
token for token against the reference tokenizer (tests/text). ASCII text, most of a catalogue,
takes a shorter road to the same words (str.translate and one regex instead of a loop over
characters: 16 against 158 us a product title), and a word's pieces are remembered (7 us).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Dict, List, Sequence, Tuple

import numpy as np

MAX_WORD_CHARS = 100
CONTINUATION = "##"
UNKNOWN, START, END, PADDING = "[UNK]", "[CLS]", "[SEP]", "[PAD]"

# ASCII's cases of the steps below: controls dropped, \t \n \r as spaces; punctuation as `_is_punctuation`
_ASCII_NORMAL = {code: None for code in [*range(32), 127] if chr(code) not in "\t\n\r"} | {ord(c): " " for c in "\t\n\r"}
_ASCII_WORDS = re.compile(r"[^ !-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")
WORD_CACHE_SIZE = 1 << 17  # words whose pieces are remembered (the least recently used go first)

_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    code = ord(char)  # BERT counts every non-alphanumeric ASCII character as punctuation
    return 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 \
        or unicodedata.category(char).startswith("P")


def _is_cjk(char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in _CJK)


def normalize(text: str) -> str:
    kept = []
    for char in text:
        if char in "\0\ufffd" or _is_control(char):
            continue
        if _is_whitespace(char):
            kept.append(" ")
        elif _is_cjk(char):
            kept.append(f" {char} ")
        else:
            kept.append(char)
    decomposed = unicodedata.normalize("NFD", "".join(kept))
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()


def split_words(text: str) -> List[str]:
    words = []
    for chunk in text.split():
        word = ""
        for char in chunk:
            if _is_punctuation(char):
                words += [word, char] if word else [char]
                word = ""
            else:
                word += char
        if word:
            words.append(word)
    return words


def words(text: str) -> List[str]:
    """`split_words(normalize(text))`, by the shorter road where the text is ASCII."""
    if text.isascii():
        return _ASCII_WORDS.findall(text.translate(_ASCII_NORMAL).lower())
    return split_words(normalize(text))


class WordPieceTokenizer:
    """Text -> token ids, from a BERT `vocab.txt` (one token per line, the line number its id)."""

    def __init__(self, vocab_path: str, max_length: int = 64):
        if max_length < 2:
            raise ValueError(f"max_length={max_length}: needs room for [CLS] and [SEP]")
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab: Dict[str, int] = {line.rstrip("\n"): i for i, line in enumerate(f)}
        missing = [t for t in (UNKNOWN, START, END, PADDING) if t not in self.vocab]
        if missing:
            raise ValueError(f"{vocab_path}: not a BERT vocabulary, no {missing}")
        self.max_length = max_length
        self.unknown, self.start, self.end, self.padding = (self.vocab[t] for t in (UNKNOWN, START, END, PADDING))
        self._pieces = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._match)

    def _match(self, word: str) -> List[int]:
        if len(word) > MAX_WORD_CHARS:
            return [self.unknown]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.unknown]
        return pieces

    def ids(self, text: str) -> List[int]:
        pieces = [i for word in words(text) for i in self._pieces(word)]
        return [self.start, *pieces[:self.max_length - 2], self.end]

    def pad(self, rows: Sequence[List[int]]) -> Tuple[np.ndarray, np.ndarray]:
        """Token id rows (`ids`) as (ids, mask), [len(rows), longest] int32, padded to the longest row."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.padding, np.int32)
        mask = np.zeros((len(rows), width), np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return ids, mask
