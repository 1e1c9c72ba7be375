//! The connections of enqueues that wait for replicas (`WAIT`). A `WAIT` holds the connection
//! it is sent on until the replicas answer (Redis serves nothing else of that client
//! meanwhile), so these enqueues never use the shared connection, and each takes a connection
//! of the pool for itself: a wait never queues behind another's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Conn;
use super::connection::Target;

/// How many enqueues may wait for replicas at once (each on a connection of its own).
const CONNECTIONS: usize = 16;

/// Connections made as needed, up to [`CONNECTIONS`], each lent to one enqueue at a time.
pub(crate) struct DurablePool {
    free: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

/// A connection lent to one enqueue; it goes back to the pool when dropped.
pub(crate) struct Lent<'a> {
    pub(crate) conn: Conn,
    pool: &'a DurablePool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.conn.clone());
    }
}

impl DurablePool {
    /// An empty pool.
    pub(crate) fn new() -> DurablePool {
        DurablePool {
            free: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(CONNECTIONS)),
        }
    }

    /// A connection to `target` whose commands may take up to `response_timeout`, for one
    /// enqueue; None when none is free within `wait` (as many enqueues wait for replicas
    /// already: the replicas are slow or gone).
    pub(crate) async fn lend(
        &self,
        target: &Target,
        response_timeout: Duration,
        wait: Duration,
    ) -> redis::RedisResult<Option<Lent<'_>>> {
        let permit = match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Ok(None),
        };
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match free {
            Some(conn) => conn,
            None => target.with_timeout(response_timeout).await?,
        };
        Ok(Some(Lent {
            conn,
            pool: self,
            _permit: permit,
        }))
    }
}
