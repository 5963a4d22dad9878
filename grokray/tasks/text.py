"""Text classification from a CSV or Parquet file with ``text`` and ``label`` columns (IMDB, Yelp, …).

Test part: the rows that no seed ever trains on, fixed for the file. With a ``split`` column they are
the rows whose split is ``test`` (IMDB and Yelp come with a train/test split); without one, the
first ``round(TEST_FRACTION · N)`` rows (at least 1) of a permutation seeded with ``DATA_SEED``.
Every other row is a candidate: each seed draws its training set from the candidates
(``Pool.candidates``, ``pool.split``) and validates on the rest of the file, its unused candidates
and the test part.

Tokenizer: lowercase, then words are the matches of ``WORD_RE`` (letters, digits, underscore, one
inner apostrophe: "don't" is one word). The vocabulary is the ``vocab_size`` most frequent words of
the candidate rows, ties broken alphabetically, so a word seen only in the test part is unknown;
ids 0 = pad, 1 = unknown word, 2 = cls, then the words from the most frequent (id 3) down. (A
seed's unused candidates are validation rows whose words may have ids that seed never trains, as
with a tokenizer's fixed vocabulary: Zhu et al. use bert-base-uncased's.) Every example is
[cls, w1, w2, …] truncated / padded with 0 to ``max_len``. Labels: the sorted distinct values of
``label`` map to 0, 1, … (so 0/1 stay 0/1 and "negative"/"positive" become 0/1).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from grokray.config import TEXT_TEST_FRACTION, find_data_file, text_test_rows
from grokray.tasks.pool import DATA_SEED, Pool

PAD, UNK, CLS = 0, 1, 2
N_SPECIAL = 3
WORD_RE = re.compile(r"\w+(?:'\w+)?")
SPLIT_COLUMN = "split"
TEST_FRACTION = TEXT_TEST_FRACTION  # share of the rows held out as the test part (no split column)


def words(text: str) -> list[str]:
    """The lowercase words of ``text``."""
    return WORD_RE.findall(text.lower())


def build_vocabulary(texts: Sequence[str], vocab_size: int) -> dict[str, int]:
    """word → id for the ``vocab_size`` most frequent words (ties alphabetical), ids from 3."""
    counts = Counter(word for text in texts for word in words(text))
    ranked = sorted(counts, key=lambda word: (-counts[word], word))[:vocab_size]
    return {word: N_SPECIAL + rank for rank, word in enumerate(ranked)}


def encode(texts: Sequence[str], vocabulary: Mapping[str, int], max_len: int) -> torch.Tensor:
    """(len(texts), max_len) int64: [cls, word ids…] truncated, padded with 0."""
    out = torch.full((len(texts), max_len), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [CLS] + [vocabulary.get(word, UNK) for word in words(text)]
        ids = ids[:max_len]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def resolve_data_path(data_path: str) -> Path:
    """``data_path`` as given, else (if relative) relative to the project root, where data/ ships."""
    if not data_path:
        raise ValueError("data_path: is empty; the text task needs a CSV or Parquet file (text, label)")
    path = find_data_file(data_path)
    if path is None:
        raise ValueError(f"data_path: no such file: {data_path}")
    return path


def read_table(data_path: str) -> tuple[list[str], list[Any], list[str] | None]:
    """The ``text`` and ``label`` columns of a Parquet (.parquet, .pq) or CSV (anything else) file,
    and its ``split`` column as lowercase text (None if it has none)."""
    import pandas as pd

    path = resolve_data_path(data_path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except Exception as err:
        raise ValueError(f"data_path: cannot read {data_path}: {type(err).__name__}: {err}") from None
    missing = [column for column in ("text", "label") if column not in frame.columns]
    if missing:
        raise ValueError(
            f"data_path: {data_path} lacks column(s) {', '.join(missing)}; "
            f"has {', '.join(map(str, frame.columns))}"
        )
    if frame["label"].isna().any():
        raise ValueError(f"data_path: {data_path} has rows without a label")
    if len(frame) < 2:
        raise ValueError(f"data_path: {data_path} has {len(frame)} row(s); need at least 2")
    texts = ["" if isinstance(t, float) else str(t) for t in frame["text"].tolist()]  # NaN text → ""
    splits = None
    if SPLIT_COLUMN in frame.columns:
        splits = [str(value).strip().lower() for value in frame[SPLIT_COLUMN].tolist()]
    return texts, frame["label"].tolist(), splits


def held_out_rows(n_rows: int, splits: Sequence[str] | None, data_path: str = "") -> torch.Tensor:
    """(n_rows,) bool: the fixed test part (see the module docstring); at least one row is in it
    and at least one row is not."""
    if splits is not None:
        test = torch.tensor([value == "test" for value in splits], dtype=torch.bool)
        if not test.any() or test.all():
            raise ValueError(
                f"data_path: {data_path} has a {SPLIT_COLUMN} column with "
                f"{'no' if not test.any() else 'only'} 'test' rows; need both test and other rows"
            )
        return test
    n_test = text_test_rows(n_rows)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(DATA_SEED))
    test = torch.zeros(n_rows, dtype=torch.bool)
    test[order[:n_test]] = True
    return test


def label_ids(labels: Sequence[Any]) -> tuple[torch.Tensor, list[Any]]:
    """Class ids of ``labels`` (sorted distinct values → 0, 1, …) and the sorted values."""
    classes = sorted(set(labels), key=lambda value: (isinstance(value, str), value))
    index = {value: i for i, value in enumerate(classes)}
    return torch.tensor([index[value] for value in labels], dtype=torch.long), classes


def text_pool(config: Mapping[str, Any]) -> Pool:
    """Every row of ``data_path`` tokenized with the vocabulary of the candidate rows (the rows
    outside the test part); n_outputs = number of distinct labels (at least 2)."""
    texts, labels, splits = read_table(config["data_path"])
    held_out = held_out_rows(len(texts), splits, config["data_path"])
    candidates = torch.nonzero(~held_out).flatten()
    vocabulary = build_vocabulary([texts[i] for i in candidates.tolist()], config["vocab_size"])
    targets, classes = label_ids(labels)
    return Pool(
        inputs=encode(texts, vocabulary, config["max_len"]),
        targets=targets,
        n_outputs=max(2, len(classes)),
        candidates=candidates,
        vocab_size=N_SPECIAL + len(vocabulary),
        seq_len=config["max_len"],
    )
