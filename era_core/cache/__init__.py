"""Content-addressed embedding cache: keyed, checksummed, sharded, locked, atomic arrays.

Modules: ``base`` (format constants, the encoder protocol), ``keys`` (``cache_key``), ``integrity``
(entry files and their checks), ``entries`` (shard-by-shard computation), ``api`` (``embed_texts``,
``cache_info``, ``clear_cache``).

An entry lives in ``<root>/<model_key>/<key[:2]>/<key>/`` with ``embeddings.npy`` (float32,
memory-mappable) and ``manifest.json`` (written last). While an entry is being computed its rows
are committed shard by shard (``shard-00000.npy`` + ``shard-00000.json`` holding its checksum), so
a killed run resumes at the first missing shard (and the temp files it left are deleted). The key
covers every field that changes a vector, so a stale array is never served.

Integrity on a hit is sampled, not full, because re-hashing a corpus of many gigabytes on every
read would cost more than the read itself. At write time the manifest records, next to the
SHA-256 of the whole file, an ``integrity`` block: the file's size and mtime, the ``.npy`` header's
offset and digest, and the SHA-256 of ``SAMPLE_BLOCKS`` row blocks (``SAMPLE_BLOCK_BYTES`` each;
the first and the last always, the others picked by hashing the entry key, so an entry always
checks the same blocks). Every hit (``verify="sample"``) checks the size, the header (float32,
C order, the requested shape, data filling the file exactly), the header digest and the sampled
blocks: about 8 MiB read whatever the entry's size. That catches truncation, extension, a rewritten
or zeroed file and any damage inside a sampled block; it misses damage confined to unsampled blocks
(a single flipped bit in the middle of a large corpus) when the file's mtime is unchanged. The full
SHA-256 runs when asked (``verify="full"``), when the file's mtime differs from the recorded one
(something wrote to it, or it was copied without preserving times) and for entries whose manifest
has no ``integrity`` block (written before it existed); a full check that passes records a fresh
``integrity`` block, so the next hit is sampled again.
"""

from era_core.cache.store import cache_info, clear_cache, embed_texts
from era_core.cache.base import CACHE_FORMAT, ROLES, VERIFY_MODES, CacheCorruptionWarning, SupportsEncode
from era_core.cache.entries import (
    EntryPlan,
    commit_shard,
    encode_shard,
    finalize_entry,
    lookup_entry,
    missing_shards,
    plan_entry,
    shard_committed,
)
from era_core.cache.integrity import entry_dir
from era_core.cache.keys import cache_key

__all__ = [
    "CACHE_FORMAT", "ROLES", "VERIFY_MODES", "CacheCorruptionWarning", "EntryPlan", "SupportsEncode", "cache_info",
    "cache_key", "clear_cache", "commit_shard", "embed_texts", "encode_shard", "entry_dir", "finalize_entry",
    "lookup_entry", "missing_shards", "plan_entry", "shard_committed",
]  # fmt: skip
