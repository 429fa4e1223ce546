//! Host services behind core's seams: shared data for the replay table,
//! and etcd's answers as core reads them.

use crate::abi::{self, SharedSetError};
use mksgate_core::etcd::{Answer, Call, EtcdStore, MAX_ANSWER_BYTES};
use mksgate_core::replay::{SetError, SharedStore, StoreUnavailable};

/// Sends `call` to etcd (`POST`, JSON) through `store.cluster`; false if
/// Envoy refused to.
pub fn dispatch_to_etcd(store: &EtcdStore, call: &Call) -> bool {
    dispatch_to(&store.cluster, &store.authority, call).is_some()
}

/// Sends `call` through `cluster`; the call's token (its answer names it),
/// `None` if Envoy refused to.
pub fn dispatch_to(cluster: &str, authority: &str, call: &Call) -> Option<u32> {
    abi::dispatch_post(
        cluster,
        authority,
        call.path,
        call.body.as_bytes(),
        call.timeout_ms,
        call.authorization.as_deref(),
    )
    .ok()
}

/// Hands the answer of the HTTP call just completed to `read`, as core's
/// `Answer`: no status is no response; a body over `MAX_ANSWER_BYTES` is
/// no answer of etcd's (status 0, an error).
pub fn with_etcd_answer<R>(body_size: usize, read: impl FnOnce(Answer<'_>) -> R) -> R {
    let (status, body) = abi::http_call_response(body_size, MAX_ANSWER_BYTES);
    let answer = match (status, &body) {
        (Some(status), Some(body)) => Answer::Response { status, body },
        (Some(_), None) => Answer::Response {
            status: 0,
            body: &[],
        },
        (None, _) => Answer::NoResponse { timed_out: false },
    };
    read(answer)
}

/// proxy-wasm shared data: one map per VM id, shared by every worker.
pub struct EnvoySharedData;

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreUnavailable> {
        abi::get_shared_data(key).map_err(|_| StoreUnavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(SharedSetError::CasMismatch) => Err(SetError::CasMismatch),
            Err(SharedSetError::Other(_)) => Err(SetError::Failed),
        }
    }
}
