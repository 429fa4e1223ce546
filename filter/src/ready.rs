//! What the root context hands every stream context of its worker: the
//! compiled configuration and the metric ids, defined once at configure
//! time, and the worker's state that outlives a configuration push (the
//! table of open consoles, the revocation view, the etcd token). The one
//! type the two contexts share, so neither imports the other.

use crate::lifetime::OpenConsoles;
use crate::metrics::Metrics;
use mksgate_core::revocation::View;
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
    /// The worker's open consoles, by stream context: shared with the
    /// `Ready` of every configuration since the worker started.
    pub open: Rc<RefCell<OpenConsoles>>,
    /// The worker's view of the revocations (with `revocation`).
    pub revocations: Rc<RefCell<View>>,
}

impl Ready {
    /// A `Ready` for `config`, taking over the worker's open consoles and,
    /// when it reads the same revocations, the view from `old`.
    pub fn new(config: Config, metrics: Metrics, old: Option<&Ready>) -> Ready {
        let open = old.map_or_else(Rc::default, |o| o.open.clone());
        let revocations = match old {
            Some(o) if o.config.revocation == config.revocation => o.revocations.clone(),
            _ => Rc::default(),
        };
        Ready {
            config,
            metrics,
            etcd_token: RefCell::new(None),
            open,
            revocations,
        }
    }

    /// The token revocation reads carry: the worker's etcd token when they
    /// go to the replay store's cluster with access control on (whose
    /// login it is); `Err` while that token is missing (the login is due
    /// within a tick: a read without it would only be refused).
    pub fn revocation_token(&self) -> Result<Option<Rc<str>>, NotLoggedIn> {
        let Some(source) = self.config.revocation.as_ref() else {
            return Ok(None);
        };
        match &self.config.replay_store {
            mksgate_core::ReplayStore::Etcd(store)
                if store.cluster == source.cluster && store.auth().is_some() =>
            {
                self.etcd_token
                    .borrow()
                    .clone()
                    .map(Some)
                    .ok_or(NotLoggedIn)
            }
            _ => Ok(None),
        }
    }
}

/// The worker has no etcd token (yet).
#[derive(Debug)]
pub struct NotLoggedIn;
