"""The etcd key of an mksgate revocation (README, "Ending consoles").

Usage: python3 revocation_key.py KIND VALUE [KEY_PREFIX]
  KIND is sub, tenant or jti. Put the key with a lease (any value) to
  revoke; delete it to lift the revocation.
"""
import hashlib
import struct
import sys


def revocation_key(kind, value, key_prefix="/mksgate/revoked/"):
    assert kind in ("sub", "tenant", "jti")
    digest = hashlib.sha256(b"mksgate.revoked.v1")
    for part in (kind.encode(), value.encode()):
        digest.update(struct.pack(">Q", len(part)))
        digest.update(part)
    return f"{key_prefix}{kind}/{digest.hexdigest()[:32]}"


if __name__ == "__main__":
    print(revocation_key(*sys.argv[1:4]))
