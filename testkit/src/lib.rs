//! The one home of the test and bench tooling, synchronous and small: the
//! host-tests (whose async wrappers live there), the benchmark and the
//! wasm-post tests all use it, so a fix to how a process is started, how
//! Envoy is found or how a link is minted lands once.
//!
//! * [`paths`]: the workspace, the built modules, the Envoy binary.
//! * [`process`]: a child in its own process group, killed on drop.
//! * [`http`]: one blocking HTTP/1.1 request (admin APIs, plain listeners).
//! * [`link`]: the shipped contract's constants and the link minter.
//! * [`template`]: the shipped configs as text, exact replacements, templates.
//! * [`envoy`]: start Envoy (own process group, own directory) and wait for it.

pub mod envoy;
pub mod http;
pub mod link;
pub mod paths;
pub mod process;
pub mod template;
