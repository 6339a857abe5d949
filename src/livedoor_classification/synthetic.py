"""Livedoor stand-ins made on the spot, for measuring train.py without a download (bench.py): livedoor-like
articles, tokenizers whose vocabularies are made from them, randomly initialised BERTs and Llama-shaped decoders,
and the folders train.py reads a dataset and a model from.

    records = synthetic_records(2000)                  # title, body, label 0..8
    mecab, fast = local_tokenizers(records, workdir)   # the tohoku-nlp kind and the SentencePiece kind
    model_dir = save_model(bert_base(), fast, workdir / "bert-base")
    dataset_dir = write_dataset(workdir / "dataset", {"train": ..., "val": ..., "test": ...})
"""

import math
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertJapaneseTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)
from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

from livedoor_classification.dataset_files import write_jsonl, write_label2id

WORDS = (
    "今日 東京 映画 監督 公開 選手 試合 野球 スマートフォン アプリ 発表 新しい 機能 女性 結婚 仕事 会社 "
    "話題 ネット ユーザー 家電 テレビ 発売 価格 円 年 月 日 について 紹介 する した して いる ある "
    "こと もの よう ため 中 人 方 的 が の を に は と で も から まで より"
).split()
LABEL_WORDS = [
    ("独女", "恋愛"),
    ("パソコン", "ソフト"),
    ("掃除機", "冷蔵庫"),
    ("転職", "年収"),
    ("俳優", "上映"),
    ("美容", "スイーツ"),
    ("ドコモ", "端末"),
    ("サッカー", "監督"),
    ("事件", "政治"),
]


def synthetic_records(n: int, seed: int = 0, label_rate: float = 0.05) -> list[dict]:
    """Livedoor-like articles when no prepared dataset is present: titles of 15 to 45 characters,
    bodies log-normal in length with a median of 1,100 characters (sigma 0.55, 200 to 8,000), close
    to the livedoor corpus; words from a fixed list, so that MeCab sees real morphemes. Each of the
    9 labels has two words of its own, mixed in at label_rate per word, anywhere in the text, so that
    the texts can also be learned (the more of a text is read, the more of them are seen)."""
    rng = random.Random(seed)

    def text(chars: int, label: int) -> str:
        words, length = [], 0
        while length < chars:
            words.append(LABEL_WORDS[label][len(words) % 2] if rng.random() < label_rate else rng.choice(WORDS))
            length += len(words[-1])
        return "".join(words)

    records = []
    for i in range(n):
        body = min(8000, max(200, int(rng.lognormvariate(math.log(1100), 0.55))))
        records.append({"title": text(rng.randint(15, 45), i % 9), "body": text(body, i % 9), "label": i % 9})
    return records


def local_tokenizers(records: list[dict], workdir: Path):
    """A MeCab + WordPiece BertJapaneseTokenizer (the tohoku-nlp kind) and a fast Unigram tokenizer
    (the SentencePiece kind), with vocabularies made from the texts: the code paths of the real ones,
    without a download."""
    sample = [r["title"] + r["body"] for r in records[:300]]
    mecab_words = MecabTokenizer(mecab_dic="unidic_lite")
    words = sorted({w for text in sample for w in mecab_words.tokenize(text)})
    chars = sorted({c for w in words for c in w})
    vocab = dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *(f"##{c}" for c in chars)])
    vocab_file = workdir / "mecab-vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    mecab = BertJapaneseTokenizer(
        str(vocab_file), word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "unidic_lite"}
    )

    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    unigram.train_from_iterator(
        sample, trainers.UnigramTrainer(vocab_size=8000, special_tokens=specials, unk_token="<unk>")
    )
    unigram.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "mask_token": "<mask>",
    }
    fast = PreTrainedTokenizerFast(tokenizer_object=unigram, **specials)
    return mecab, fast


def bert_base() -> BertForSequenceClassification:
    """BERT-base with the vocabulary size of tohoku-nlp BERT v3, randomly initialised."""
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=32768, num_labels=9))


def random_bert(vocab_size: int, num_labels: int, layers: int, hidden: int, heads: int):
    """A BERT of this shape (feed-forward 4 x hidden, as BERT's), randomly initialised from seed 0."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def small_bert(vocab_size: int, num_labels: int) -> BertForSequenceClassification:
    """4 layers of 256: small enough to train for accuracy on CPUs."""
    return random_bert(vocab_size, num_labels, layers=4, hidden=256, heads=4)


def minilm_shape(vocab_size: int, num_labels: int) -> BertForSequenceClassification:
    """all-MiniLM-L6's shape, 6 layers of 384 with 12 heads: the Trainer comparison's model when none is given."""
    return random_bert(vocab_size, num_labels, layers=6, hidden=384, heads=12)


def random_llama(vocab_size: int, num_labels: int, layers: int, hidden: int, heads: int, kv_heads: int):
    """A Llama of this shape as a classifier (its last real token through a "score" layer), randomly initialised
    from seed 0: grouped-query attention with kv_heads key-value heads, and a SwiGLU feed-forward of 8/3 x hidden
    (Llama's ratio) rounded up to a multiple of 64. No padding id in its config, as Llama's checkpoints have none:
    train.py gives it the tokenizer's (models.set_padding)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=64 * math.ceil(8 * hidden / 3 / 64),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        num_labels=num_labels,
    )
    return LlamaForSequenceClassification(config)


def write_dataset(folder: Path, splits: dict[str, list[dict]]) -> Path:
    """A dataset folder as train.py reads it: label2id.json and a JSONL file per split, with the records'
    labels written as names ("0" to "8")."""
    labels = sorted({str(r["label"]) for records in splits.values() for r in records})
    folder.mkdir(parents=True)
    write_label2id(folder / "label2id.json", {label: i for i, label in enumerate(labels)})
    for split, records in splits.items():
        write_jsonl(folder / f"{split}.jsonl", [r | {"label": str(r["label"])} for r in records])
    return folder


def save_model(model, tokenizer, folder: Path, **config_changes) -> str:
    """The model and tokenizer saved where train.py --model_name loads them, with config_changes (such as
    attention_probs_dropout_prob=0.0) in the saved config. Saved once: sections share a folder by name
    (BERT-base is 440 MB)."""
    if not (folder / "config.json").is_file():
        original = {key: getattr(model.config, key) for key in config_changes}
        model.config.update(config_changes)
        model.save_pretrained(folder)
        model.config.update(original)
        tokenizer.save_pretrained(folder)
    return str(folder)
