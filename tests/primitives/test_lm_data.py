"""LM corpora: sources, readers, tokenizers, packing and held-out text (on generated stories)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from primitives.lm_data import iter_documents, load_corpus, pack_rows, parse_source
from primitives.tokenizer import tokenizer_from_json, train_tokenizer
from tests.assets.lm.make_corpus import write_corpus


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("stories"), n_train=120, n_test=40)


def test_sources_resolve_splits(corpus_dir: Path, tmp_path: Path) -> None:
    src = parse_source(str(corpus_dir))
    assert [Path(f).name for f in src.train_files] == ["train.jsonl"]
    assert [Path(f).name for f in src.test_files] == ["test.jsonl"]
    single = write_corpus(tmp_path / "one", n_train=5, n_test=0, layout="single")
    assert parse_source(str(single / "corpus.jsonl")).test_files == ()
    hf = parse_source("hf:mlfoundations/dclm-baseline-1.0:default")
    assert (hf.kind, hf.hf_id, hf.hf_config) == (
        "hf",
        "mlfoundations/dclm-baseline-1.0",
        "default",
    )
    with pytest.raises(ValueError, match="no such file"):
        parse_source(str(tmp_path / "missing"))


def test_jsonl_and_txt_read_the_same_documents(tmp_path: Path) -> None:
    jsonl = write_corpus(tmp_path / "j", n_train=7, n_test=3, seed=1)
    txt = write_corpus(tmp_path / "t", n_train=7, n_test=3, seed=1, layout="txt")
    for split in ("train", "test"):
        a = list(iter_documents(parse_source(str(jsonl)), split))
        assert a == list(iter_documents(parse_source(str(txt)), split))
        assert len(a) == (7 if split == "train" else 3)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"title": "no text"}) + "\n")
    with pytest.raises(ValueError, match="no text field"):
        list(iter_documents(parse_source(str(tmp_path / "bad.jsonl")), "train"))


def test_parquet_reader(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": ["one story", "two stories"]}), tmp_path / "train.parquet")
    assert list(iter_documents(parse_source(str(tmp_path)), "train")) == [
        "one story",
        "two stories",
    ]


def test_tokenizers_round_trip_and_count_bytes(corpus_dir: Path) -> None:
    docs = list(iter_documents(parse_source(str(corpus_dir)), "train"))
    text = docs[0] + " ünïcode ✓"
    for kind in ("bytes", "bpe"):
        tok = train_tokenizer(kind, docs, 400)
        (ids,) = tok.encode_batch([text])
        assert tok.decode(ids) == text
        assert sum(tok.token_bytes[i] for i in ids) == len(text.encode("utf-8"))
        again = tokenizer_from_json(tok.to_json())
        assert again.encode_batch([text]) == [ids] and again.vocab_size == tok.vocab_size
    with pytest.raises(ValueError, match="258"):
        train_tokenizer("bpe", docs, 100)


def test_rows_are_overlapping_windows() -> None:
    tok = train_tokenizer("bytes", [])
    rows = pack_rows(["abcdefgh", "ijklmnop"], tok, seq_len=4, n_rows=3)  # (3, 5)
    assert rows.shape == (3, 5) and rows.dtype == torch.int32
    assert torch.equal(rows[:-1, -1], rows[1:, 0])  # row i+1 starts where row i's targets end
    assert tok.decode(rows[0].tolist()) == "abcde"
    assert pack_rows(["ab"], tok, seq_len=8, n_rows=4).shape == (0, 9)


def test_single_split_keeps_its_test_prefix_out_of_train(tmp_path: Path) -> None:
    single = write_corpus(tmp_path, n_train=60, n_test=20, layout="single")
    source = parse_source(str(single / "corpus.jsonl"))
    corpus = load_corpus(source, seq_len=32, n_train=40, n_test=4, tokenizer="bytes")
    assert corpus.test.shape == (4, 33) and corpus.train.shape == (40, 33)
    docs = list(iter_documents(source, "train"))
    train_text = "".join(corpus.tokenizer.decode(r[:-1].tolist()) for r in corpus.train)
    assert docs[0][:40] not in train_text  # the first documents are test, never train
    assert corpus.tokenizer.decode(corpus.test[0].tolist()).startswith(docs[0][:30])


def test_hugging_face_source_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def load_dataset(name: str, config: str | None, *, streaming: bool) -> dict[str, object]:
        calls.append((name, config, streaming))
        train = [{"text": f"train document {i} " * 20} for i in range(50)]
        return {"train": train, "validation": [{"text": "held out text " * 30}] * 5}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    corpus = load_corpus(
        parse_source("hf:org/name"), seq_len=16, n_train=8, n_test=2, tokenizer="bytes"
    )
    assert calls[0] == ("org/name", None, True)
    assert corpus.train.shape == (8, 17) and corpus.test.shape == (2, 17)
    assert "held out" in corpus.tokenizer.decode(corpus.test[0].tolist())
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(ImportError, match=r"aira-async\[lm\]"):
        load_corpus(parse_source("hf:org/name"), seq_len=16, n_train=1, n_test=1)
