#!/usr/bin/env bash
# Turns on etcd's access control for mksgate, once, on a new etcd cluster:
#   - a `root` user (etcd needs one before access control goes on);
#   - a role `mksgate` that may read and write only under the links prefix
#     (etcd's roles cannot say "create only": the role can also delete its
#     own records, but nothing else in etcd);
#   - a user `mksgate` with that role, which the gateways log in as
#     (`replay_store.etcd.auth` in the plugin configuration); the role may
#     also read (only read) the revocations (`revocation.etcd.key_prefix`);
#   - with REVOKER_PASSWORD set, a user `mksgate-revoker` whose role may
#     write the revocations and nothing else: the portal's, or the one
#     `mksgate revoke --user mksgate-revoker` logs in as.
# Lease grants need no permission in etcd 3.4; revoking a lease that holds
# records needs write access to them, which only this role and root have.
#
# Usage (etcdctl 3.4 reads its connection from the environment):
#   ETCDCTL_ENDPOINTS=https://10.0.1.11:2379 ETCDCTL_CACERT=ca.crt \
#   ETCDCTL_CERT=admin.crt ETCDCTL_KEY=admin.key \
#   ROOT_PASSWORD=... MKSGATE_PASSWORD=... [REVOKER_PASSWORD=...] \
#   deploy/etcd/setup-auth.sh [PREFIX [REVOKED_PREFIX]]
# PREFIX is `replay_store.etcd.key_prefix` (default /mksgate/links/),
# REVOKED_PREFIX `revocation.etcd.key_prefix` (default /mksgate/revoked/). Give
# the gateways' client certificate a common name that is no etcd user:
# over gRPC, etcd takes a certificate's common name as the user.
set -euo pipefail

prefix="${1:-/mksgate/links/}"
revoked="${2:-/mksgate/revoked/}"
: "${ROOT_PASSWORD:?set ROOT_PASSWORD}"
: "${MKSGATE_PASSWORD:?set MKSGATE_PASSWORD}"
for p in "$prefix" "$revoked"; do
  case "$p" in
    /*) ;;
    *) echo "setup-auth: PREFIX and REVOKED_PREFIX must start with /" >&2; exit 2 ;;
  esac
done

etcdctl user add root --new-user-password="$ROOT_PASSWORD" >/dev/null
etcdctl role add root >/dev/null
etcdctl user grant-role root root >/dev/null
etcdctl role add mksgate >/dev/null
etcdctl role grant-permission mksgate --prefix=true readwrite "$prefix" >/dev/null
etcdctl role grant-permission mksgate --prefix=true read "$revoked" >/dev/null
etcdctl user add mksgate --new-user-password="$MKSGATE_PASSWORD" >/dev/null
etcdctl user grant-role mksgate mksgate >/dev/null
if [ -n "${REVOKER_PASSWORD:-}" ]; then
  etcdctl role add mksgate-revoker >/dev/null
  etcdctl role grant-permission mksgate-revoker --prefix=true readwrite "$revoked" >/dev/null
  etcdctl user add mksgate-revoker --new-user-password="$REVOKER_PASSWORD" >/dev/null
  etcdctl user grant-role mksgate-revoker mksgate-revoker >/dev/null
fi
etcdctl auth enable >/dev/null
echo "setup-auth: access control on; user mksgate may read and write under $prefix and read under $revoked"
