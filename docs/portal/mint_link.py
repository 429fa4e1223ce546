"""Mint an mksgate console link with PyJWT (pip install PyJWT).

Usage: MKSGATE_KEY=<base64url secret> [MKSGATE_AUDIENCE=...] [MKSGATE_ISSUER=...] \
       python3 mint_link.py GATEWAY HOST TICKET [KID]
"""
import base64
import os
import sys
import time
import uuid

import jwt  # PyJWT


def mint_link(gateway, host, ticket, secret_b64url, kid, audience=None, issuer=None,
              ttl=60, port=443):
    # The secret is base64url, as `mksgate keygen` prints it.
    secret = base64.urlsafe_b64decode(secret_b64url + "=" * (-len(secret_b64url) % 4))
    now = int(time.time())
    claims = {
        "host": host,
        "ticket": ticket,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,  # one-time links need a fresh jti per link
    }
    if port != 443:
        claims["port"] = port
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
    return f"wss://{gateway}/console?token={token}"


if __name__ == "__main__":
    gateway, host, ticket = sys.argv[1:4]
    kid = sys.argv[4] if len(sys.argv) > 4 else "2026-11"
    print(mint_link(gateway, host, ticket, os.environ["MKSGATE_KEY"], kid,
                    audience=os.environ.get("MKSGATE_AUDIENCE"),
                    issuer=os.environ.get("MKSGATE_ISSUER")))
