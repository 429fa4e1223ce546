// Mint an mksgate console link with jose (npm install jose).
//
// Usage: MKSGATE_KEY=<base64url secret> [MKSGATE_AUDIENCE=...] [MKSGATE_ISSUER=...] \
//        node mint_link.mjs GATEWAY HOST TICKET [KID]
import { SignJWT } from "jose";
import { randomUUID } from "node:crypto";

export async function mintLink({ gateway, host, ticket, secretB64url, kid, audience, issuer, ttl = 60 }) {
  // The secret is base64url, as `mksgate keygen` prints it.
  const secret = new Uint8Array(Buffer.from(secretB64url, "base64url"));
  let jwt = new SignJWT({ host, ticket })
    .setProtectedHeader({ alg: "HS256", kid, typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime(`${ttl}s`)
    .setJti(randomUUID()); // one-time links need a fresh jti per link
  if (audience) jwt = jwt.setAudience(audience);
  if (issuer) jwt = jwt.setIssuer(issuer);
  const token = await jwt.sign(secret);
  return `wss://${gateway}/console?token=${token}`;
}

const [gateway, host, ticket, kid = "2026-11"] = process.argv.slice(2);
console.log(await mintLink({
  gateway, host, ticket, kid,
  secretB64url: process.env.MKSGATE_KEY,
  audience: process.env.MKSGATE_AUDIENCE,
  issuer: process.env.MKSGATE_ISSUER,
}));
