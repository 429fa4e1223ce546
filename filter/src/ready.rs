//! What the root context hands every stream context of its worker: the
//! compiled configuration and the metric ids, defined once at configure
//! time. The one type the two contexts share, so neither imports the other.

use crate::metrics::Metrics;
use mksgate_core::Config;

pub struct Ready {
    pub config: Config,
    pub metrics: Metrics,
}
