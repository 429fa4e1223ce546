#!/usr/bin/env bash
# Turns on etcd's access control for mksgate, once, on a new etcd cluster:
#   - a `root` user (etcd needs one before access control goes on);
#   - a role `mksgate` that may read and write only under the links prefix
#     (etcd's roles cannot say "create only": the role can also delete its
#     own records, but nothing else in etcd);
#   - a user `mksgate` with that role, which the gateways log in as
#     (`replay_store.etcd.auth` in the plugin configuration).
# Lease grants need no permission in etcd 3.4; revoking a lease that holds
# records needs write access to them, which only this role and root have.
#
# Usage (etcdctl 3.4 reads its connection from the environment):
#   ETCDCTL_ENDPOINTS=https://10.0.1.11:2379 ETCDCTL_CACERT=ca.crt \
#   ETCDCTL_CERT=admin.crt ETCDCTL_KEY=admin.key \
#   ROOT_PASSWORD=... MKSGATE_PASSWORD=... deploy/etcd/setup-auth.sh [PREFIX]
# PREFIX is `replay_store.etcd.key_prefix` (default /mksgate/links/). Give
# the gateways' client certificate a common name that is no etcd user:
# over gRPC, etcd takes a certificate's common name as the user.
set -euo pipefail

prefix="${1:-/mksgate/links/}"
: "${ROOT_PASSWORD:?set ROOT_PASSWORD}"
: "${MKSGATE_PASSWORD:?set MKSGATE_PASSWORD}"
case "$prefix" in
  /*) ;;
  *) echo "setup-auth: PREFIX must start with /" >&2; exit 2 ;;
esac

etcdctl user add root --new-user-password="$ROOT_PASSWORD" >/dev/null
etcdctl role add root >/dev/null
etcdctl user grant-role root root >/dev/null
etcdctl role add mksgate >/dev/null
etcdctl role grant-permission mksgate --prefix=true readwrite "$prefix" >/dev/null
etcdctl user add mksgate --new-user-password="$MKSGATE_PASSWORD" >/dev/null
etcdctl user grant-role mksgate mksgate >/dev/null
etcdctl auth enable >/dev/null
echo "setup-auth: access control on; user mksgate may read and write under $prefix"
