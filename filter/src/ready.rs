//! What the root context hands every stream context of its worker: the
//! compiled configuration and the metric ids, defined once at configure
//! time. The one type the two contexts share, so neither imports the other.

use crate::lifetime::OpenConsoles;
use crate::metrics::Metrics;
use mksgate_core::Config;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Ready {
    pub config: Config,
    pub metrics: Metrics,
    /// The worker's last etcd token (etcd's access control on): every
    /// claim starts with it, so only the first, and one after the token
    /// ends, authenticates.
    pub etcd_token: RefCell<Option<Rc<str>>>,
    /// The consoles the filter will end, by stream context.
    pub open: RefCell<OpenConsoles>,
}

impl Ready {
    pub fn new(config: Config, metrics: Metrics) -> Ready {
        Ready {
            config,
            metrics,
            etcd_token: RefCell::new(None),
            open: RefCell::new(OpenConsoles::default()),
        }
    }
}
