"""Ogg pages for tests: read a stream's packets and write them into new pages, so that a test can
build the Ogg files real encoders make and ours does not (a start trim in the granule positions)."""
from __future__ import annotations

import struct
from typing import Iterator


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(page: bytes) -> int:
    """The page checksum: CRC-32 with polynomial 0x04C11DB7, no reflection, over the page with its CRC zeroed."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def pages(data: bytes) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        segments = data[position + 26]
        end = position + 27 + segments + sum(data[position + 27:position + 27 + segments])
        yield data[position:end]
        position = end


def packets(data: bytes) -> Iterator[bytes]:
    """The packets of a single-stream Ogg file, in order."""
    pending = b""
    for page in pages(data):
        segments = page[26]
        body, offset = page[27 + segments:], 0
        for size in page[27:27 + segments]:
            pending += body[offset:offset + size]
            offset += size
            if size < 255:
                yield pending
                pending = b""


def page(serial: int, sequence: int, granule: int, contents: list[bytes], flags: int = 0) -> bytes:
    """One Ogg page holding whole packets. flags: 2 beginning of stream, 4 end of stream."""
    lacing = b"".join(b"\xff" * (len(p) // 255) + bytes([len(p) % 255]) for p in contents)
    header = b"OggS" + bytes([0, flags]) + struct.pack("<qII", granule, serial, sequence) + b"\0\0\0\0"
    built = bytearray(header + bytes([len(lacing)]) + lacing + b"".join(contents))
    struct.pack_into("<I", built, 22, ogg_crc(bytes(built)))
    return bytes(built)


def vorbis_with_start_trim(data: bytes, samples_per_packet: list[int], trim: int, first_page_packets: int = 3) -> bytes:
    """A Vorbis stream (one in an Ogg file) re-paged so that its granule positions ask the decoder to
    drop `trim` samples at the start, as encoders do: a first audio page of a few packets whose
    granule is `trim` less than the samples they decode. samples_per_packet: what each audio packet
    decodes to."""
    serial = struct.unpack_from("<I", data, 14)[0]
    stream = list(packets(data))
    headers, audio = stream[:3], stream[3:]
    out = [page(serial, 0, 0, headers[:1], flags=2), page(serial, 1, 0, headers[1:])]
    groups = [audio[:first_page_packets]] + [audio[i:i + 16] for i in range(first_page_packets, len(audio), 16)]
    decoded, done = 0, 0
    for number, group in enumerate(groups):
        decoded += sum(samples_per_packet[done:done + len(group)])
        done += len(group)
        last = number == len(groups) - 1
        out.append(page(serial, number + 2, decoded - trim, group, flags=4 if last else 0))
    return b"".join(out)
