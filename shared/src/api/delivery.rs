//! Fan-out: deliver a frame to a conversation's connections and the site's
//! online agents: both read in one round trip (two concurrent, eventually
//! consistent Queries), then posted concurrently, bounded. A connection that is gone is deleted (it was
//! closed without `$disconnect`); any other failure is logged and skipped, so
//! one bad connection never fails a send.

use std::collections::BTreeMap;

use crate::clock::Timestamp;
use crate::domain::{Connection, ConnectionId, Principal, SessionId, SiteId};
use crate::gateway::{ConnectionGateway, GatewayError};
use crate::storage::{ConnectionStore, StoreError};

/// What a fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Connections that received the frame.
    pub sent: usize,
    /// Stale connections found and deleted.
    pub gone: usize,
    /// Connections that failed for another reason.
    pub failed: usize,
}

/// Who should receive a conversation's frames: its members and, if `with_agents`,
/// every online agent of the site; each once, never `exclude`. An agent whose
/// token has expired receives nothing more (its connection carries the token's
/// `exp`, so this costs no read); revoked agents' records are removed by the
/// revocation itself (`eurochat-admin`), so they are not found here at all.
pub async fn recipients(
    store: &(impl ConnectionStore + ?Sized),
    site: &SiteId,
    session: &SessionId,
    with_agents: bool,
    exclude: Option<&ConnectionId>,
    now: Timestamp,
) -> Result<Vec<Connection>, StoreError> {
    let mut by_id: BTreeMap<ConnectionId, Connection> = BTreeMap::new();
    for c in store.fan_out_targets(session, with_agents.then_some(site), now).await? {
        by_id.insert(c.id.clone(), c);
    }
    if let Some(x) = exclude {
        by_id.remove(x);
    }
    by_id.retain(|_, c| match &c.principal {
        Principal::Agent { token_exp, .. } => *token_exp > now.epoch_seconds(),
        Principal::Visitor { .. } => true,
    });
    Ok(by_id.into_values().collect())
}

/// How many `@connections` posts one fan-out has in flight at once: enough that a
/// site's agents and a conversation's members are reached in one or two round
/// trips, few enough that a large site does not open hundreds of connections
/// from one Lambda (or exhaust its sockets).
pub const MAX_POSTS_IN_FLIGHT: usize = 32;

/// Sends `frame` to every connection in `to`, at most [`MAX_POSTS_IN_FLIGHT`]
/// at once, deleting the ones that are gone.
pub async fn send_all(
    store: &(impl ConnectionStore + ?Sized),
    gateway: &dyn ConnectionGateway,
    to: &[Connection],
    frame: &[u8],
) -> Delivered {
    // In waves of at most MAX_POSTS_IN_FLIGHT (a site's usual fan-out is one wave).
    let mut results = Vec::with_capacity(to.len());
    for wave in to.chunks(MAX_POSTS_IN_FLIGHT) {
        let sent = futures::future::join_all(
            wave.iter()
                .map(|c| async move { (c, gateway.send(&c.id, frame).await) }),
        )
        .await;
        results.extend(sent);
    }
    let mut d = Delivered::default();
    for (c, r) in results {
        match r {
            Ok(()) => d.sent += 1,
            Err(GatewayError::Gone) => {
                d.gone += 1;
                if let Err(e) = store.delete_connection(&c.id).await {
                    tracing::warn!(error = %e, "could not delete a gone connection");
                }
            }
            Err(e) => {
                d.failed += 1;
                tracing::warn!(error = %e, "delivery to one connection failed");
            }
        }
    }
    d
}
