"""Real Japanese text that loads offline, a fixed seeded held-out split, and a sentencepiece tokenizer.

Corpora are registered by name in `REAL_TEXT_CORPORA` and return a list of documents (strings):
`manpages_ja` (Debian's manpages-ja, troff stripped to Japanese sentences), `hironsan` (500 sentences of
hironsancorpus) and `jsonl` (the user's own file, one {"text": ...} per line). `text_split` makes the
held-out set a function of (corpus, split_seed) alone, so every run of a study is scored on the same text.
The tokenizer is a byte-fallback unigram sentencepiece model: any string round-trips, even characters it
never saw, which matters when a model trained on synthetic text is scored on real text.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lab.core.registry import Registry
from lab.core.rundir import atomic_write_json, atomic_write_text

# Hiragana, katakana (incl. the prolonged-sound mark), CJK ideographs and half-width katakana.
JAPANESE_CHAR = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
_WIDE_CHAR = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")  # joined without a space
DEFAULT_MAN_ROOT = Path("/usr/share/man/ja")

REAL_TEXT_CORPORA: Registry[Callable[["RealTextConfig"], list[str]]] = Registry("real text corpus")


class EmptyCorpusError(ValueError):
    """A corpus (or tokenizer training set) with no usable text: training on it would be meaningless."""


def is_japanese(text: str) -> bool:
    return JAPANESE_CHAR.search(text) is not None


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_CACHE_DIR", Path.home() / ".cache" / "synth_transfer_lab"))


# --------------------------------------------------------------------------------------------- troff

_NAMED_CHARS = {
    "em": "—", "en": "–", "bu": "・", "co": "©", "rg": "®", "tm": "™", "aq": "'", "dq": '"', "lq": "“",
    "rq": "”", "oq": "‘", "cq": "’", "hy": "-", "mi": "-", "ti": "~", "rs": "\\", "ga": "`", "ha": "^",
    "at": "@", "sh": "#", "Do": "$", "->": "→", "<-": "←", ">=": "≥", "<=": "≤", "mu": "×", "di": "÷",
    "pl": "+", "eq": "=", "sl": "/", "ba": "|", "br": "|", "ul": "_", "de": "°", "R": "®", "Tm": "™",
}
_ESCAPE = re.compile(
    r"""\\(?:
        (?P<font>f(?:\[[^\]]*\]|\(..|.))            # font change
      | (?P<size>s(?:\[[^\]]*\]|\([+-]?\d\d|[+-]?\d{1,2}))  # point size
      | (?P<named>\((?P<n2>..)|\[(?P<nb>[^\]]*)\])  # \(xx and \[xxx] special characters
      | (?P<string>\*(?:\((?P<s2>..)|\[(?P<sb>[^\]]*)\]|(?P<s1>.)))  # \*x user strings
      | (?P<arg>[hvwlLoXbDNZ]'[^']*')               # escapes with a quoted argument
      | (?P<reg>[nkgmMYV](?:\[[^\]]*\]|\(..|.))     # registers, colours, environment
      | (?P<char>.)                                  # one-character escapes
    )""",
    re.VERBOSE,
)
_ONE_CHAR = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": "\t", "'": "'", "`": "`",
             ".": ".", '"': ""}
_TEXT_MACROS = {"B", "I", "SM", "SB", "SH", "SS"}
_ALTERNATING_MACROS = {"BR", "RB", "BI", "IB", "IR", "RI"}
_SENTENCE_END = re.compile(r"(?<=[。！？])")


def _named(name: str) -> str:
    if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
        return chr(int(name[1:], 16))
    return _NAMED_CHARS.get(name, "")


def _replace_escape(match: re.Match[str]) -> str:
    if match["named"]:
        return _named(match["n2"] or match["nb"])
    if match["string"]:
        return _NAMED_CHARS.get(match["s2"] or match["sb"] or match["s1"], "")
    if match["char"] is not None:
        return _ONE_CHAR.get(match["char"], "")
    return ""  # fonts, sizes, motions, registers: formatting only


def strip_escapes(line: str) -> str:
    """Troff escapes -> plain characters (fonts and sizes vanish, \\- becomes -, \\(em becomes —)."""
    comment = re.search(r'(?<!\\)\\"', line)
    if comment:
        line = line[: comment.start()]
    return re.sub(r"[ \t]+", " ", _ESCAPE.sub(_replace_escape, line)).strip()


def _macro_args(rest: str) -> list[str]:
    """Arguments of a macro line: blank-separated, double quotes group (troff's own rule)."""
    return [quoted or bare for quoted, bare in re.findall(r'"((?:[^"]|"")*)"|(\S+)', rest)]


def _join(lines: Sequence[str]) -> str:
    """Join the lines of a paragraph: no space between two Japanese characters, one elsewhere."""
    text = ""
    for line in lines:
        if text and not (_WIDE_CHAR.match(text[-1]) and _WIDE_CHAR.match(line[0])):
            text += " "
        text += line
    return text


def troff_paragraphs(source: str) -> list[str]:
    """Running text of a man page: macros and escapes removed, filled lines joined into paragraphs."""
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            paragraphs.append(_join(current))
            current.clear()

    lines = source.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        k += 1
        if re.match(r"^[.'][ \t]*\\\"", line) or line.startswith('\\"'):
            continue
        if not line.startswith((".", "'")):
            text = strip_escapes(line)
            if text:
                current.append(text)
            else:
                flush()
            continue
        macro, _, rest = line[1:].strip().partition(" ")
        if macro in ("de", "am", "ig"):  # a macro definition or an ignored block: skip to ".."
            while k < len(lines) and lines[k].strip() != "..":
                k += 1
            k += 1
            continue
        if macro == "TS":  # a table: skip the options and format, keep each cell
            flush()
            separator = "\t"
            while k < len(lines) and not lines[k].rstrip().endswith("."):
                if tab := re.search(r"tab\s*\((.)\)", lines[k]):
                    separator = tab[1]
                k += 1
            k += 1
            while k < len(lines) and not lines[k].startswith(".TE"):
                for cell in re.split(f"{re.escape(separator)}|T\\{{|T\\}}", lines[k]):
                    if (text := strip_escapes(cell)) and not cell.startswith("."):
                        paragraphs.append(text)
                k += 1
            k += 1
            continue
        args = [strip_escapes(a) for a in _macro_args(rest)]
        if macro in _TEXT_MACROS or macro in _ALTERNATING_MACROS:
            if macro in ("SH", "SS"):
                flush()
            text = ("" if macro in _ALTERNATING_MACROS else " ").join(a for a in args if a)
            if text:
                current.append(text)
            if macro in ("SH", "SS"):
                flush()
            continue
        flush()
        if macro == "IP" and args and len(args[0]) > 1:
            paragraphs.append(args[0])
        if macro in ("TP", "HP") and k < len(lines) and not lines[k].startswith((".", "'")):
            if text := strip_escapes(lines[k]):
                paragraphs.append(text)  # the tag line of a tagged paragraph stands alone
            k += 1
    flush()
    return paragraphs


def troff_to_sentences(source: str, min_chars: int = 4) -> list[str]:
    """Clean Japanese sentences of a man page: paragraphs split after 。！？, non-Japanese ones dropped."""
    sentences = []
    for paragraph in troff_paragraphs(source):
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if len(sentence) >= min_chars and is_japanese(sentence):
                sentences.append(sentence)
    return sentences


# ------------------------------------------------------------------------------------------- corpora


@dataclass
class RealTextConfig:
    """Which real corpus, and how it is split into the training pool and the held-out test set."""

    name: str = "manpages_ja"
    path: str | None = None  # man root for manpages_ja (default /usr/share/man/ja); the file for jsonl
    test_size: int = 2000  # documents held out
    val_size: int = 0  # documents carved from the training pool to choose hyper-parameters on (never the test set)
    split_seed: int = 0
    min_chars: int = 4  # shorter documents are dropped

    def validate(self) -> None:
        if self.name not in REAL_TEXT_CORPORA:
            REAL_TEXT_CORPORA.get(self.name)  # raises with the list of valid names
        if self.test_size <= 0:
            raise ValueError(f"text.test_size must be positive, got {self.test_size}")
        if self.val_size < 0:
            raise ValueError(f"text.val_size must be >= 0, got {self.val_size}")
        if self.min_chars < 1:
            raise ValueError(f"text.min_chars must be >= 1, got {self.min_chars}")
        if self.name == "jsonl" and not self.path:
            raise ValueError("text.path must name a JSONL file for the jsonl corpus")


def _man_files(root: Path) -> list[Path]:
    """Every distinct man page under `root` (symlinked aliases counted once), in a fixed order."""
    seen, files = set(), []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            files.append(path)
    return files


_CLEANER_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]  # a cleaner edit invalidates the cache


def _read_man(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    for encoding in ("utf-8", "euc-jp"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="replace")


@REAL_TEXT_CORPORA.register("manpages_ja")
def load_manpages_ja(config: RealTextConfig) -> list[str]:
    """Sentences of Debian's manpages-ja (~1,100 pages); parsed once, then cached on disk.

    The cache key covers the page files (names, sizes, mtimes) and this module's source, so a new package
    version or a change to the cleaner re-parses instead of serving stale sentences.
    """
    root = Path(config.path) if config.path else DEFAULT_MAN_ROOT
    files = _man_files(root) if root.is_dir() else []
    if not files:
        raise EmptyCorpusError(
            f"no man pages under {root}: install them with `apt-get install -y manpages-ja` "
            "(or point text.path at a folder of troff pages)"
        )
    stamps = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    stamp = hashlib.sha256(json.dumps([_CLEANER_HASH, config.min_chars, stamps]).encode()).hexdigest()[:16]
    return list(_cached_man_sentences(str(root), stamp, config.min_chars))


@lru_cache(maxsize=4)
def _cached_man_sentences(root: str, stamp: str, min_chars: int) -> tuple[str, ...]:
    cached = cache_dir() / f"manpages_ja-{stamp}.txt"
    if cached.exists():
        return tuple(cached.read_text(encoding="utf-8").split("\n"))
    sentences = [s for f in _man_files(Path(root)) for s in troff_to_sentences(_read_man(f), min_chars)]
    atomic_write_text(cached, "\n".join(sentences))
    return tuple(sentences)


@REAL_TEXT_CORPORA.register("hironsan")
def load_hironsan(config: RealTextConfig) -> list[str]:
    """The 500 sentences of hironsancorpus (MIT), rebuilt from its IOB2 token file."""
    from importlib.resources import files

    try:
        source = files("hironsan.corpus").joinpath("iob_sents.txt").read_text(encoding="utf-8")
    except ModuleNotFoundError as error:
        raise EmptyCorpusError("hironsancorpus is not installed: pip install hironsancorpus==0.1.2") from error
    return ["".join(line.split("\t", 1)[0] for line in block.splitlines())
            for block in source.split("\n\n") if block.strip()]


@REAL_TEXT_CORPORA.register("jsonl")
def load_jsonl(config: RealTextConfig) -> list[str]:
    """The user's own corpus: one JSON object per line with a "text" field."""
    path = Path(str(config.path))
    if not path.is_file():
        raise FileNotFoundError(f"text.path {path} is not a file")
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{number}: every line must be a JSON object with a string field 'text'")
        texts.append(record["text"])
    return texts


def load_corpus(config: RealTextConfig) -> list[str]:
    """The corpus' documents: too-short ones dropped, exact duplicates removed (no train/test leaks)."""
    config.validate()
    documents = REAL_TEXT_CORPORA.get(config.name)(config)
    kept = list(dict.fromkeys(d.strip() for d in documents if len(d.strip()) >= config.min_chars))
    if not kept:
        raise EmptyCorpusError(f"corpus {config.name!r} has no document of >= {config.min_chars} characters")
    return kept


@dataclass(frozen=True)
class TextSplit:
    train: list[str]
    test: list[str]
    val: list[str] = field(default_factory=list)


def text_split(config: RealTextConfig) -> TextSplit:
    """A held-out set fixed by (corpus, split_seed), and after it in the same permutation the validation set
    (so adding one leaves the test set as it was); documents keep their corpus order on every side."""
    documents = load_corpus(config)
    if config.test_size + config.val_size >= len(documents):
        raise ValueError(
            f"text.test_size={config.test_size} + text.val_size={config.val_size} leaves no training text: "
            f"{config.name} has {len(documents)} documents"
        )
    order = np.random.default_rng(config.split_seed).permutation(len(documents))
    side = np.zeros(len(documents), dtype=np.int8)  # 0 train, 1 test, 2 validation
    side[order[: config.test_size]] = 1
    side[order[config.test_size : config.test_size + config.val_size]] = 2
    return TextSplit(*([d for d, k in zip(documents, side) if k == kind] for kind in (0, 1, 2)))


UNSEEN_CHARACTERS = 0x110000  # a character never seen in training gets a share of the escape mass over all of Unicode


def unigram_bits_per_char(train_texts: Sequence[str], test_texts: Sequence[str]) -> float:
    """The trivial model a language model must beat: character frequencies of `train_texts` (add-one smoothed,
    one escape count for unseen characters, spread uniformly over Unicode), scored on `test_texts` in bits per
    character, the same unit as `evaluate_text`."""
    counts = Counter("".join(train_texts))
    if not counts:
        raise ValueError("a unigram baseline needs non-empty training text")
    total = sum(counts.values()) + len(counts) + 1
    test = Counter("".join(test_texts))
    characters = sum(test.values())
    if characters == 0:
        raise ValueError("cannot score a unigram baseline on empty text")
    bits = 0.0
    for char, k in test.items():
        seen = counts.get(char)
        p = (seen + 1) / total if seen else 1 / total / UNSEEN_CHARACTERS
        bits -= k * math.log2(p)
    return bits / characters


# ----------------------------------------------------------------------------------------- tokenizer

TOKENIZER_MODEL = "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass
class TokenizerConfig:
    """A sentencepiece model: unigram with byte fallback, identity normalisation so decode(encode(x)) == x."""

    vocab_size: int = 8000
    model_type: str = "unigram"
    byte_fallback: bool = True
    character_coverage: float = 0.9995  # rarer characters are left to byte fallback
    max_sentence_length: int = 16384
    input_sentence_size: int = 0  # 0: train on every line; else a seeded sample of that many
    seed: int = 0
    num_threads: int = 2

    def validate(self) -> None:
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"tokenizer.model_type must be unigram or bpe, got {self.model_type!r}")
        floor = 260 if self.byte_fallback else 8  # 256 byte pieces + <unk> <s> </s> + one real piece
        if self.vocab_size < floor:
            raise ValueError(f"tokenizer.vocab_size must be >= {floor} (byte_fallback={self.byte_fallback}), "
                             f"got {self.vocab_size}")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ValueError(f"tokenizer.character_coverage must be in [0.9, 1], got {self.character_coverage}")
        if self.input_sentence_size < 0 or self.num_threads < 1 or self.max_sentence_length < 1:
            raise ValueError("tokenizer.input_sentence_size >= 0, num_threads >= 1, max_sentence_length >= 1")


class Tokenizer:
    """A trained sentencepiece model plus the config it came from; picklable (for render workers)."""

    def __init__(self, model_proto: bytes, config: TokenizerConfig) -> None:
        import sentencepiece as spm

        self.model_proto = model_proto
        self.config = config
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig | None = None) -> "Tokenizer":
        """Train on `texts` (one line per sentence; newlines inside a text split it). Deterministic by seed."""
        import io

        import sentencepiece as spm

        config = config or TokenizerConfig()
        config.validate()
        lines = [line for text in texts for line in text.splitlines() if line.strip()]
        if not lines:
            raise EmptyCorpusError("cannot train a tokenizer on an empty corpus")
        spm.set_random_generator_seed(config.seed)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=model, vocab_size=config.vocab_size,
                model_type=config.model_type, byte_fallback=config.byte_fallback,
                character_coverage=config.character_coverage, max_sentence_length=config.max_sentence_length,
                input_sentence_size=config.input_sentence_size, shuffle_input_sentence=True,
                num_threads=config.num_threads, normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, split_digits=True, hard_vocab_limit=False,
                allow_whitespace_only_pieces=True, minloglevel=2,
            )
        except RuntimeError as error:  # sentencepiece reports config/data mismatches as RuntimeError
            raise ValueError(f"sentencepiece training failed: {error} (a small vocab_size needs a lower "
                             "character_coverage; byte fallback covers the rest)") from error
        return cls(model.getvalue(), config)

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    @property
    def fingerprint(self) -> str:
        """sha256 of the model: token counts recorded with a dataset name the tokenizer that made them."""
        return hashlib.sha256(self.model_proto).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self._sp.encode(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._sp.decode([int(i) for i in ids]))

    def count_tokens(self, texts: Iterable[str]) -> int:
        return sum(len(ids) for ids in self._sp.encode(list(texts)))

    def save(self, directory: Path | str) -> Path:
        """Write tokenizer.model and tokenizer_config.json into `directory` (e.g. next to a checkpoint)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{TOKENIZER_MODEL}.{os.getpid()}.tmp"
        tmp.write_bytes(self.model_proto)
        tmp.replace(directory / TOKENIZER_MODEL)
        import sentencepiece as spm

        atomic_write_json(directory / TOKENIZER_CONFIG, {
            "config": asdict(self.config), "vocab_size": self.vocab_size, "sha256": self.fingerprint,
            "sentencepiece": spm.__version__,
        })
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> "Tokenizer":
        directory = Path(directory)
        model_path, config_path = directory / TOKENIZER_MODEL, directory / TOKENIZER_CONFIG
        if not (model_path.exists() and config_path.exists()):
            raise FileNotFoundError(f"{directory} needs {TOKENIZER_MODEL} and {TOKENIZER_CONFIG}")
        record: dict[str, Any] = json.loads(config_path.read_text())
        known = {f.name for f in fields(TokenizerConfig)}
        config = TokenizerConfig(**{k: v for k, v in record["config"].items() if k in known})
        tokenizer = cls(model_path.read_bytes(), config)
        if tokenizer.fingerprint != record.get("sha256"):
            raise ValueError(f"{model_path} does not match the sha256 in {config_path} (mixed-up or corrupt files)")
        return tokenizer

    def __getstate__(self) -> dict[str, Any]:
        return {"model_proto": self.model_proto, "config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_proto"], state["config"])  # type: ignore[misc]


def bits_per_character(total_nll_nats: float, n_characters: int) -> float:
    """Summed negative log-likelihood (nats) over a text -> bits per character: comparable across tokenizers."""
    if n_characters <= 0:
        raise ValueError(f"n_characters must be positive, got {n_characters}")
    if not math.isfinite(total_nll_nats) or total_nll_nats < 0:
        raise ValueError(f"total_nll_nats must be a finite non-negative number, got {total_nll_nats}")
    return total_nll_nats / (n_characters * math.log(2))
