"""What the model sees, checked against the tokenizer itself: for every tokenizer family our users meet,
tokenize() must give exactly the tokenizer's own `tokenizer(title, body)` when the texts fit, and when
they do not, exactly the tokens the truncation rule keeps of the tokenizer's own encoding of each text.

The fast tokenizers are built here offline with the `tokenizers` library, each with the post-processor
its model family ships (BERT/ELECTRA, XLM-R's `</s></s>`, DeBERTa-v2, ModernBERT; RoBERTa's byte-level
BPE and the MeCab BertJapaneseTokenizers come from conftest). A tokenizer built this way is loaded back
with AutoTokenizer, as a user's model is.
"""

import io
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, LlamaConfig, PreTrainedTokenizerFast

from conftest import corpus_sentences, train_run
from livedoor_classification.dataset_files import read_jsonl, write_jsonl
from livedoor_classification.inputs import Collator, Truncation, tokenize
from livedoor_classification.models import set_padding

# The pair from the report: with tokenizers 0.23 the title became a single special token.
PAIRS = [
    ("東京で大きな地震が発生", "今日の午後、東京で大きな地震が発生しました。"),
    ("【映画】第12回 NEWS 7 ニュース", "監督の公開について紹介します。\n家電の話題、ABC 7番。"),
    ("スマートフォンの新しいアプリ", "ドコモが発表した。"),
]
TITLE = "映画の話題"
BODY = "".join(f"{word}の{number}回目の公開について紹介します。" for number in range(8) for word in ("監督", "家電"))
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_TEMPLATE = dict(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1")


def sample_texts(corpus_dir) -> list[str]:
    return corpus_sentences(corpus_dir) + [text for pair in PAIRS for text in pair] + [TITLE, BODY]


def wrap(backend: Tokenizer, specials: dict, out) -> PreTrainedTokenizerFast:
    """Save as a model folder's tokenizer.json and load it back as users do."""
    PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=512, **specials).save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def template(specials: list[str], single: str, pair: str):
    tokens = [(token, specials.index(token)) for token in specials if token in single + pair]
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=tokens)


def bert_wordpiece(texts, post_processor) -> Tokenizer:
    """BERT's fast tokenizer (mBERT, ELECTRA): BertNormalizer, BertPreTokenizer, WordPiece."""
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=BERT_SPECIALS))
    backend.post_processor = post_processor
    return backend


def unigram(texts, specials: list[str], post_processor) -> Tokenizer:
    """SentencePiece Unigram with Metaspace, as XLM-R and DeBERTa-v3 ship it: a fixed vocabulary (the
    Unigram trainer is not deterministic) of every character and a few words, scored so that words win."""
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    words = ["▁東京", "東京", "地震", "映画", "監督", "公開", "紹介", "します", "話題", "家電", "ニュース"]
    pieces = [(s, 0.0) for s in specials] + [("▁", -3.0)] + [(w, -5.0) for w in words] + [(c, -10.0) for c in chars]
    backend = Tokenizer(models.Unigram(pieces, unk_id=specials.index("<unk>" if "<unk>" in specials else "[UNK]")))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = post_processor
    return backend


def char_wordlevel(texts) -> Tokenizer:
    """A character-level vocabulary (WordLevel over single characters) with BERT's template."""
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(BERT_SPECIALS + chars)}, unk_token="[UNK]"))
    split = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), split])
    backend.post_processor = template(BERT_SPECIALS, **BERT_TEMPLATE)
    return backend


def byte_level_bpe(texts, post_processor, specials: list[str]) -> Tokenizer:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = post_processor
    return backend


BERT_NAMES = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
# Decoders (issue 30): Llama 3 begins each segment with <|begin_of_text|>; Qwen2 and GPT-2 add nothing (their
# post-processor is ByteLevel's); llm-jp/Llama 2-style SentencePiece ends each text with </s>. Llama, GPT-2 and
# llm-jp ship no padding token: train.py pads with the end-of-text token (models.set_padding), as the fixture.
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]
LLAMA3_NAMES = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
GPT_SPECIALS = ["<|endoftext|>"]
SPM_SPECIALS = ["<unk>", "<s>", "</s>"]
DECODER_FAMILIES = {
    "llama3-bpe": lambda t: (
        byte_level_bpe(
            t,
            template(LLAMA3_SPECIALS, "<|begin_of_text|> $A", "<|begin_of_text|> $A <|begin_of_text|>:1 $B:1"),
            LLAMA3_SPECIALS,
        ),
        LLAMA3_NAMES,
    ),
    "qwen2-bpe": lambda t: (
        byte_level_bpe(t, processors.ByteLevel(trim_offsets=False), GPT_SPECIALS),
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    ),
    "gpt2-bpe": lambda t: (
        byte_level_bpe(t, processors.ByteLevel(trim_offsets=True), GPT_SPECIALS),
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
    ),
    "sentencepiece-eos": lambda t: (
        unigram(t, SPM_SPECIALS, template(SPM_SPECIALS, "<s> $A </s>", "<s> $A </s> <s>:1 $B:1 </s>:1")),
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    ),
}
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
XLMR_NAMES = {"unk_token": "<unk>", "pad_token": "<pad>", "cls_token": "<s>", "sep_token": "</s>"}
FAST_FAMILIES = {
    # BERT and ELECTRA: [CLS] A [SEP] B [SEP], segment 1 from B on; older tokenizer.json files ship BertProcessing
    "bert-wordpiece": lambda t: (bert_wordpiece(t, template(BERT_SPECIALS, **BERT_TEMPLATE)), BERT_NAMES),
    "bert-wordpiece-bertprocessing": lambda t: (
        bert_wordpiece(t, processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))),
        BERT_NAMES,
    ),
    # XLM-R: <s> A </s></s> B </s>, every segment id 0
    "xlmr-unigram": lambda t: (
        unigram(t, XLMR_SPECIALS, template(XLMR_SPECIALS, "<s> $A </s>", "<s> $A </s> </s> $B </s>")),
        XLMR_NAMES,
    ),
    # DeBERTa-v2/v3: SentencePiece with BERT's template
    "deberta-unigram": lambda t: (unigram(t, BERT_SPECIALS, template(BERT_SPECIALS, **BERT_TEMPLATE)), BERT_NAMES),
    "char-wordlevel": lambda t: (char_wordlevel(t), BERT_NAMES),
    # ModernBERT: byte-level BPE with [CLS] A [SEP] B [SEP] and no segment embeddings
    "modernbert-bpe": lambda t: (
        byte_level_bpe(t, template(BERT_SPECIALS, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]"), BERT_SPECIALS),
        BERT_NAMES,
    ),
}
FAST_FAMILIES |= DECODER_FAMILIES
FAMILIES = [*FAST_FAMILIES, "roberta_dir", "bert_dir", "char_bert_dir"]  # conftest: byte-level BPE, MeCab


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, corpus_dir, tmp_path_factory):
    """Each tokenizer family in turn."""
    if request.param not in FAST_FAMILIES:
        return AutoTokenizer.from_pretrained(request.getfixturevalue(request.param))
    backend, names = FAST_FAMILIES[request.param](sample_texts(corpus_dir))
    tokenizer = wrap(backend, names, tmp_path_factory.mktemp(request.param))
    if request.param in DECODER_FAMILIES:
        set_padding(request.param, tokenizer, LlamaConfig())  # as train.py sets up a decoder's tokenizer
    return tokenizer


def ours(tokenizer, records, fields, max_seq_len=512, truncation=None):
    truncation = truncation or Truncation()
    return tokenize(records, tokenizer, fields, max_seq_len, segment_ids=True, truncation=truncation)


def as_lists(example) -> tuple[list[int], list[int]]:
    return example["input_ids"].tolist(), example["token_type_ids"].tolist()


def own_ids(tokenizer, text: str) -> list[int]:
    """The tokenizer's own encoding of one text, without special tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_pairs_that_fit_are_exactly_the_tokenizers_own(family):
    records = [{"title": a, "body": b, "label": 0} for a, b in PAIRS]
    for (a, b), example in zip(PAIRS, ours(family, records, ["title", "body"]), strict=True):
        expected = family(a, b, return_token_type_ids=True)
        assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"]), (a, b)
        assert len(own_ids(family, a)) > 1  # the title is there, token by token, not one special token


def test_one_field_and_three_fields_are_the_tokenizers_own(family):
    records = [{"title": a, "body": b, "extra": "追記", "label": 0} for a, b in PAIRS]
    for (_, b), example in zip(PAIRS, ours(family, records, ["body"]), strict=True):
        expected = family(b, return_token_type_ids=True)
        assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"])
    for (a, b), example in zip(PAIRS, ours(family, records, ["title", "body", "extra"]), strict=True):
        expected = family(a, b + "\n追記", return_token_type_ids=True)  # the rest joined into the second segment
        assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"])


def test_batches_are_the_tokenizers_own_padded_batch(family):
    """Input ids, segment ids and the attention mask of a collated batch: the tokenizer's own padding."""
    records = [{"title": a, "body": b, "label": 0} for a, b in PAIRS]
    batch = Collator(family.pad_token_id, 512)(ours(family, records, ["title", "body"]))
    titles, bodies = zip(*PAIRS, strict=True)
    expected = family(list(titles), list(bodies), padding=True, pad_to_multiple_of=8, return_token_type_ids=True)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[key].tolist() == expected[key], key


MAX_SEQ_LEN = 32


def test_head_truncation_is_the_tokenizers_only_second(family):
    """A short title and a long body: the tokenizer's own truncation="only_second" is the oracle."""
    [example] = ours(family, [{"title": TITLE, "body": BODY, "label": 0}], ["title", "body"], MAX_SEQ_LEN)
    expected = family(TITLE, BODY, truncation="only_second", max_length=MAX_SEQ_LEN, return_token_type_ids=True)
    assert len(expected["input_ids"]) == MAX_SEQ_LEN
    assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"])


def test_tail_truncation_is_the_tokenizers_left_side_only_second(family):
    [example] = ours(
        family, [{"title": TITLE, "body": BODY, "label": 0}], ["title", "body"], MAX_SEQ_LEN, Truncation("tail")
    )
    family.truncation_side = "left"  # the tokenizer's own way to keep the end
    try:
        expected = family(TITLE, BODY, truncation="only_second", max_length=MAX_SEQ_LEN, return_token_type_ids=True)
    finally:
        family.truncation_side = "right"
    assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"])


def body_start(full: list[int], body: list[int]) -> int:
    """Where the body's tokens begin in a full sequence."""
    return next(k for k in range(len(full)) if full[k : k + len(body)] == body)


def test_head_tail_keeps_the_ends_of_the_tokenizers_own_encoding(family):
    """No library cuts a body at both ends: the tokenizer's head-truncated pair gives the special tokens
    around the body, and its own encoding of the body gives the tokens the rule keeps."""
    head = family(TITLE, BODY, truncation="only_second", max_length=MAX_SEQ_LEN, return_token_type_ids=True)
    body = own_ids(family, BODY)
    start = body_start(head["input_ids"], body[:8])
    room = len(head["input_ids"]) - family.num_special_tokens_to_add(pair=True) - len(own_ids(family, TITLE))
    kept = body[: room // 4] + body[-(room - room // 4) :]  # a quarter of the room from the head (Sun et al.)
    [example] = ours(
        family, [{"title": TITLE, "body": BODY, "label": 0}], ["title", "body"], MAX_SEQ_LEN, Truncation("head_tail")
    )
    ids = head["input_ids"]
    assert example["input_ids"].tolist() == ids[:start] + kept + ids[start + room :]
    assert example["token_type_ids"].tolist() == head["token_type_ids"]


def test_windows_are_the_tokenizers_overflowing_windows(family):
    """The tokenizer's own return_overflowing_tokens with a stride (its overlap) gives the same windows,
    except that our last window ends with the text (as long as the others) where the tokenizer's is short."""
    if not family.is_fast:  # the Python tokenizers return one overflow, not every window
        pytest.skip("only fast tokenizers return every overflowing window")
    [head] = ours(family, [{"title": TITLE, "body": BODY, "label": 0}], ["title", "body"], MAX_SEQ_LEN)
    room = len(head["input_ids"]) - family.num_special_tokens_to_add(pair=True) - len(own_ids(family, TITLE))
    stride = room // 2
    windows = ours(
        family, [{"title": TITLE, "body": BODY, "label": 0}], ["title", "body"], MAX_SEQ_LEN, Truncation(windows=3)
    )
    overlap = {"stride": room - stride, "return_overflowing_tokens": True}  # the tokenizer's stride is the overlap
    expected = family(
        TITLE, BODY, truncation="only_second", max_length=MAX_SEQ_LEN, return_token_type_ids=True, **overlap
    )
    assert len(expected["input_ids"]) > 3
    assert [w["input_ids"].tolist() for w in windows] == expected["input_ids"][:3]
    # Every window has the first one's segment ids: the tokenizers library gives its overflowing windows
    # segment id 1 for the body even where the template says 0 (XLM-R, ModernBERT), unlike its first window.
    assert all(w["token_type_ids"].tolist() == expected["token_type_ids"][0] for w in windows)


def test_a_title_longer_than_half_the_budget_keeps_its_head_and_leaves_the_body_half(family):
    """Title and body both long: each keeps half of an even budget, as the tokenizer's own longest_first."""
    title = "".join(a for a, _ in PAIRS) * 2
    assert len(own_ids(family, title)) > 14 and len(own_ids(family, BODY)) > 14
    max_seq_len = 2 * 14 + family.num_special_tokens_to_add(pair=True)
    [example] = ours(family, [{"title": title, "body": BODY, "label": 0}], ["title", "body"], max_seq_len)
    expected = family(title, BODY, truncation="longest_first", max_length=max_seq_len, return_token_type_ids=True)
    assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"])


def test_special_tokens_placed_wrongly_stop_the_run(family, monkeypatch):
    """The guard in tokenize(): a misread template (as every title once was) is one error, not a silent run."""
    from livedoor_classification import inputs

    wrong = [(family.cls_token_id, None, 0), (0, 1, 0), (family.sep_token_id, None, 0)]  # no title
    monkeypatch.setattr(inputs, "special_token_template", lambda *args: wrong)
    if not family.is_fast:
        pytest.skip("the Python tokenizers' special tokens are prepare_for_model's own")
    records = [{"title": a, "body": b, "label": 0} for a, b in PAIRS]
    for max_seq_len in (512, 16):  # also when no text fits whole: the guard checks a short start of one
        with pytest.raises(ValueError, match="special tokens are not where we put them"):
            ours(family, records, ["title", "body"], max_seq_len)


# Records with empty fields (issue 28): transformers' fast tokenizers encode (title, "") as the title alone,
# its Python (MeCab) ones as a pair with an empty second segment; each tokenizer's own way is the oracle.
EMPTY_FIELDS = [(TITLE, ""), ("", TITLE), ("", ""), (TITLE, " ")]


def test_empty_fields_are_the_tokenizers_own(family):
    """Each record first in its split (the guard in tokenize() reads a split's first record), and all in one."""
    records = [{"title": a, "body": b, "label": 0} for a, b in EMPTY_FIELDS + PAIRS]
    expected = [family(a, b, return_token_type_ids=True) for a, b in EMPTY_FIELDS + PAIRS]
    expected = [(e["input_ids"], e["token_type_ids"]) for e in expected]
    for record, own in zip(records, expected, strict=True):
        [example] = ours(family, [record], ["title", "body"])
        assert as_lists(example) == own, record
    assert [as_lists(example) for example in ours(family, records, ["title", "body"])] == expected
    [example] = ours(family, [{"body": "", "label": 0}], ["body"])
    own = family("", return_token_type_ids=True)
    assert as_lists(example) == (own["input_ids"], own["token_type_ids"])


def test_a_long_title_without_body_is_cut_as_the_tokenizer_cuts_it(family):
    [example] = ours(family, [{"title": BODY, "body": "", "label": 0}], ["title", "body"], MAX_SEQ_LEN)
    expected = family(BODY, "", truncation=True, max_length=MAX_SEQ_LEN, return_token_type_ids=True)
    assert len(expected["input_ids"]) == MAX_SEQ_LEN
    assert as_lists(example) == (expected["input_ids"], expected["token_type_ids"])


def classifier_folder(tokenizer, out: Path) -> Path:
    """A model folder as train.py --save_model writes it, for a title + body model with this tokenizer
    (random weights: predict.py must give the model's own probabilities, whatever they are)."""
    tokenizer.save_pretrained(out)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out)
    settings = {"text_fields": ["title", "body"], "max_seq_len": 64, "normalize": True, "batch_size": 2}
    settings |= {"precision": "fp32", "truncation": asdict(Truncation()), "threshold": None}
    (out / "predict.json").write_text(json.dumps(settings))
    return out


def test_predict_gives_the_models_own_probabilities_for_empty_fields(family, tmp_path, monkeypatch, capsys):
    """The README's `echo ... | predict.py <title + body model>`, and a file whose first record has no body:
    each text's probabilities are the model's on the tokenizer's own `tokenizer(title, body)`."""
    import predict

    model_dir = classifier_folder(family, tmp_path / "model")
    rows = [(TITLE, ""), ("", TITLE), *PAIRS, ("", "")]
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps({"title": a, "body": b}, ensure_ascii=False) + "\n" for a, b in rows))
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    for stdin, texts, options in (
        ("今日の試合でゴールを決めた\n", [("今日の試合でゴールを決めた", "")], {}),
        ("", rows, {"input": path}),
    ):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        predict.main(predict.Args(model_dir=model_dir, **options))
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(lines) == len(texts)
        for line, (a, b) in zip(lines, texts, strict=True):
            if not a and not b:
                assert line["probabilities"] is None and line["error"] == "empty text"
                continue
            with torch.inference_mode():
                logits = model(**family(a, b, return_tensors="pt", return_token_type_ids=True)).logits
            expected = dict(zip("abc", logits.softmax(dim=-1)[0].tolist(), strict=True))
            assert line["probabilities"] == pytest.approx(expected, abs=2e-4), (a, b)


def test_train_encodes_a_split_whose_first_record_has_no_body_as_the_tokenizer_does(
    roberta_dir, dataset_dir, tmp_path, monkeypatch
):
    """A byte-level BPE (fast) tokenizer encodes (title, "") as the title alone; train.py's examples follow it."""
    import train
    from livedoor_classification import inputs

    data, samples = tmp_path / "data", {"train": 16, "val": 8, "test": 8}
    shutil.copytree(dataset_dir, data)
    for split, size in samples.items():  # the first record that --max_*_samples keeps loses its body
        records = read_jsonl(data / f"{split}.jsonl")
        first = records.index(inputs.subset(records, size)[0])
        write_jsonl(data / f"{split}.jsonl", records[:first] + [records[first] | {"body": ""}] + records[first + 1 :])
    first = {}

    def tokenize_and_keep_the_first(records, tokenizer, fields, max_seq_len, segment_ids, split, truncation):
        examples = inputs.tokenize(records, tokenizer, fields, max_seq_len, segment_ids, split, truncation)
        first[split] = tokenizer(records[0]["title"], records[0]["body"])["input_ids"], examples[0]["input_ids"]
        return examples

    monkeypatch.setattr(train, "tokenize", tokenize_and_keep_the_first)
    options = ["--epochs", "1", "--max_train_samples", 16, "--max_eval_samples", 8, "--max_seq_len", 64]
    train_run(roberta_dir, data, tmp_path / "out", *options, "--precision", "fp32")
    assert set(first) == {"train", "val", "test"}
    for own, example in first.values():
        assert example.tolist() == own


def test_predict_reports_a_tokenizer_failure_in_one_line(roberta_dir, tmp_path, monkeypatch, in_process):
    """The guard in tokenize() stops predict.py as it stops train.py: one line, no traceback, no output."""
    import predict
    from livedoor_classification import inputs

    tokenizer = AutoTokenizer.from_pretrained(roberta_dir)
    model_dir = classifier_folder(tokenizer, tmp_path / "model")
    wrong = [(tokenizer.cls_token_id, None, 0), (0, 1, 0), (tokenizer.sep_token_id, None, 0)]  # no title
    monkeypatch.setattr(inputs, "special_token_template", lambda *args: wrong)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{TITLE}\n"))
    result = in_process(predict, model_dir, "--stdin_field", "body", check_args=predict.check_args)
    assert result.returncode == 1 and "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"predict.py: error: {model_dir}: its tokenizer's special tokens are not where we put them;"
        " please report this model at the project's issues"
    )
