//! mksgate's contract, written once: the signed console link (JWS with
//! HMAC), the plugin configuration, and the admission decision. The wasm
//! filter, the CLI and the tests all use this crate, so they cannot drift.
//!
//! Nothing here calls the host: no proxy-wasm, no WASI, no clock. The filter
//! gathers `RequestFacts` and the time, calls `decide`, and applies the
//! `Decision`; one-time use goes through the `replay::SharedStore` seam.

pub mod audit;
pub mod cidr;
pub mod claims;
pub mod code;
pub mod config;
pub mod decision;
pub mod etcd;
pub mod jws;
pub mod lifetime;
pub mod one_time;
pub mod replay;
pub mod request;
pub mod revocation;
pub mod scope;
pub mod target;

pub use audit::{log_line, Audit};
pub use code::Code;
pub use config::{Config, ConfigError, ReplayStore};
pub use decision::{
    decide, Admission, Commit, Decision, Deferred, OneTime, Pending, Refusal, Rewrite,
};
pub use request::{HeaderValue, RequestFacts};
