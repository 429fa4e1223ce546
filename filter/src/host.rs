//! Host services behind core's seams: shared data for the replay table.

use mksgate_core::replay::{SetError, SharedStore, StoreUnavailable};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// proxy-wasm shared data: one map per VM id, shared by every worker.
pub struct EnvoySharedData;

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreUnavailable> {
        hostcalls::get_shared_data(key).map_err(|_| StoreUnavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Failed),
        }
    }
}
