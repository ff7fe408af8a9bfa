#!/usr/bin/python3
"""Writes the seed shards of cache_shard_fuzzer (tests/fuzz/cache_shard_seeds):
a small valid top-k shard and a small valid sampled one, in the layout of
cache/cache_shard.h.

  tests/fuzz/make_cache_shard_seeds.py OUT_DIR"""
import os
import struct
import sys
import zlib


def bits(fields):
    """Packs (value, width) pairs LSB first, as cache/bit_stream.h does."""
    acc, used, out = 0, 0, bytearray()
    for value, width in fields:
        acc |= (value & ((1 << width) - 1)) << used
        used += width
        while used >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            used -= 8
    if used:
        out.append(acc & 0xFF)
    return bytes(out)


def shard(kind, vocab, positions, top_k, exact, value_bits, samples, records):
    head = b"RTTCACHE" + struct.pack("<8I", 1, kind, vocab, positions, top_k, exact, value_bits,
                                     samples) + struct.pack("<QQ", 0, len(records))
    head += struct.pack("<II", zlib.crc32(head), 0)
    index, offset = b"", 0
    for key, record in enumerate(records):
        index += struct.pack("<QQII", 1000 + key, offset, len(record), zlib.crc32(record))
        offset += len(record)
    return head + index + b"".join(records)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    half = {0.0: 0x0000, -0.5: 0xB800, -1.0: 0xBC00, -3.0: 0xC200}
    # top-2 of 16 classes, 1 exact, 4-bit codes, 2 positions per sequence.
    topk = bits([(3, 4), (7, 4), (half[-0.5], 16), (0x2C00, 16), (5, 4), (half[-3.0], 16)] * 2)
    with open(os.path.join(out, "topk.rtc"), "wb") as f:
        f.write(shard(1, 16, 2, 2, 1, 4, 32, [topk, topk]))
    # 4 draws over 16 classes: one distinct id drawn 4 times, then two ids.
    sampled = bits([(1, 3), (3, 4), (3, 2), (2, 3), (5, 4), (0, 2), (9, 4), (2, 2)])
    with open(os.path.join(out, "sampled.rtc"), "wb") as f:
        f.write(shard(2, 16, 2, 32, 4, 8, 4, [sampled]))


if __name__ == "__main__":
    main()
