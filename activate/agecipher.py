"""The primitives age v1 needs, in standard-library Python: X25519 (RFC 7748),
ChaCha20-Poly1305 (RFC 8439), HKDF-SHA-256 (RFC 5869) and the ed25519 → X25519 key map.

The switcher runs with the system python3 and no third-party package, so these are written
here. They decrypt only: nothing here makes a key or a nonce. ChaCha20 runs every 64-byte
block of a chunk at once, one 32-bit lane per block packed into Python integers, which makes
a 500 KB secret take a fraction of a second instead of seconds.
"""

from __future__ import annotations

import hashlib
import hmac

P = 2**255 - 19
_A24 = 121665
_MASK32 = 0xFFFFFFFF


class CipherError(Exception):
    """An authentication tag did not match: the key is wrong or the data was changed."""


# --- HKDF-SHA-256 -----------------------------------------------------------------------------


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


# --- X25519 -----------------------------------------------------------------------------------


def _clamp(scalar: bytes) -> int:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def x25519(scalar: bytes, u_bytes: bytes) -> bytes:
    """RFC 7748 section 5: the Montgomery ladder, on Python integers."""
    if len(scalar) != 32 or len(u_bytes) != 32:
        raise ValueError("X25519 takes 32-byte inputs")
    k = _clamp(scalar)
    x1 = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + _A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


X25519_BASE = (9).to_bytes(32, "little")


def ed25519_scalar(seed: bytes) -> bytes:
    """The X25519 secret of an ed25519 key: the first half of SHA-512(seed), as RFC 8032 makes it."""
    return hashlib.sha512(seed).digest()[:32]


def ed25519_to_x25519_public(public: bytes) -> bytes:
    """The birational map from the Edwards y to the Montgomery u: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if y >= P or y == 1:
        raise ValueError("not an ed25519 public key")
    return ((1 + y) * pow(1 - y, P - 2, P) % P).to_bytes(32, "little")


# --- ChaCha20-Poly1305 ------------------------------------------------------------------------


def _rotl(x: int, r: int, mask: int) -> int:
    return ((x << r) | (x >> (32 - r))) & mask


def _quarter(s: list[int], a: int, b: int, c: int, d: int, mask: int) -> None:
    s[a] = (s[a] + s[b]) & mask
    s[d] = _rotl(s[d] ^ s[a], 16, mask)
    s[c] = (s[c] + s[d]) & mask
    s[b] = _rotl(s[b] ^ s[c], 12, mask)
    s[a] = (s[a] + s[b]) & mask
    s[d] = _rotl(s[d] ^ s[a], 8, mask)
    s[c] = (s[c] + s[d]) & mask
    s[b] = _rotl(s[b] ^ s[c], 7, mask)


def chacha20_keystream(key: bytes, nonce: bytes, counter: int, blocks: int) -> bytes:
    """`blocks` 64-byte keystream blocks from `counter` on, all computed side by side: word i of
    every block lives in one integer, block j in bits 64j..64j+31 (the gap takes the carries)."""
    if blocks == 0:
        return b""
    rep = sum(1 << (64 * j) for j in range(blocks))
    mask = _MASK32 * rep
    words = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    words += [int.from_bytes(key[i : i + 4], "little") for i in range(0, 32, 4)]
    words += [0] + [int.from_bytes(nonce[i : i + 4], "little") for i in range(0, 12, 4)]
    init = [w * rep for w in words]
    init[12] = sum(((counter + j) & _MASK32) << (64 * j) for j in range(blocks))
    s = list(init)
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12, mask)
        _quarter(s, 1, 5, 9, 13, mask)
        _quarter(s, 2, 6, 10, 14, mask)
        _quarter(s, 3, 7, 11, 15, mask)
        _quarter(s, 0, 5, 10, 15, mask)
        _quarter(s, 1, 6, 11, 12, mask)
        _quarter(s, 2, 7, 8, 13, mask)
        _quarter(s, 3, 4, 9, 14, mask)
    out = bytearray(64 * blocks)
    for i in range(16):
        lanes = ((s[i] + init[i]) & mask).to_bytes(8 * blocks, "little")
        for k in range(4):
            out[4 * i + k :: 64] = lanes[k::8]
    return bytes(out)


def _xor(data: bytes, stream: bytes) -> bytes:
    n = len(data)
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")
    return value.to_bytes(n, "little")


def poly1305(key: bytes, message: bytes) -> bytes:
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(message), 16):
        block = message[i : i + 16]
        acc = (acc + int.from_bytes(block + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _pad16(n: int) -> bytes:
    return bytes(-n % 16)


def chacha20poly1305_decrypt(key: bytes, nonce: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """RFC 8439 section 2.8, the opening direction; raises CipherError when the tag differs."""
    if len(sealed) < 16:
        raise CipherError("shorter than its tag")
    ciphertext, tag = sealed[:-16], sealed[-16:]
    blocks = (len(ciphertext) + 63) // 64
    stream = chacha20_keystream(key, nonce, 0, blocks + 1)
    mac_data = (
        aad
        + _pad16(len(aad))
        + ciphertext
        + _pad16(len(ciphertext))
        + len(aad).to_bytes(8, "little")
        + len(ciphertext).to_bytes(8, "little")
    )
    if not hmac.compare_digest(poly1305(stream[:32], mac_data), tag):
        raise CipherError("authentication failed")
    return _xor(ciphertext, stream[64:])
