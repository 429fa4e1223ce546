//! Host services behind core's seams: shared data for the replay table.

use crate::abi::{self, SharedSetError};
use mksgate_core::replay::{SetError, SharedStore, StoreUnavailable};

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
