//! One connection of a frontend: the granted ring and data pages and the
//! event channel, made by the xenbus `connect` hook and dropped (grants
//! ended, port closed) by `disconnect`.

use xen_ioring::{FrontCursors, FrontRing};
use xen_platform::{DomId, EventChannels, GrantedPages, Grants, Notifier, Port, PAGE_SIZE};

use crate::abi::MAX_SEGMENTS;
use crate::frontend::queue::{ChunkKind, Queue};
use crate::request::Request;
use crate::response::Response;

/// A connection's resources and ring cursors.
#[derive(Debug)]
pub(crate) struct Link {
    ring: GrantedPages,
    pool: GrantedPages,
    pub(crate) port: Port,
    notifier: Notifier,
    cursors: FrontCursors,
    pub(crate) slots: u32,
}

/// What a step of the ring did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) issued: usize,
    pub(crate) answered: usize,
}

impl Link {
    /// Grants `2^order` ring pages (initialised as a fresh ring) and a
    /// pool of eleven data pages per ring slot to `backend`, and offers it
    /// an event channel.
    pub(crate) fn new(
        grants: &mut dyn Grants,
        events: &mut dyn EventChannels,
        backend: DomId,
        order: u32,
    ) -> std::io::Result<Link> {
        let ring = grants.grant_pages(backend, 1 << order, true)?;
        let front = FrontRing::<Request, Response>::new(ring.pages().shared_mem())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let (cursors, slots) = (front.cursors(), front.size());
        let pool_pages = usize::try_from(slots).unwrap_or(0) * MAX_SEGMENTS;
        let pool = grants.grant_pages(backend, pool_pages, true)?;
        let port = events.alloc_unbound(backend)?;
        let notifier = match events.notifier(port) {
            Ok(notifier) => notifier,
            Err(err) => {
                let _ = events.unbind(port);
                return Err(err);
            }
        };
        Ok(Link { ring, pool, port, notifier, cursors, slots })
    }

    /// The ring's grant references.
    pub(crate) fn ring_refs(&self) -> &[u32] {
        self.ring.refs()
    }

    /// Takes every response, then issues what the queue has, publishing
    /// once. A [`xen_ioring::RingError`] means the backend's indices are
    /// impossible: the caller closes the device.
    pub(crate) fn pump(&mut self, queue: &mut Queue, issue: bool) -> Result<Progress, xen_ioring::RingError> {
        let ring_mem = self.ring.pages().shared_mem();
        let pool = self.pool.pages().shared_mem();
        let Ok(mut ring) = FrontRing::<Request, Response>::resume(ring_mem, self.cursors) else {
            unreachable!("a ring this link initialised")
        };
        let mut progress = Progress::default();
        let result = loop {
            match ring.take_response() {
                Ok(Some(response)) => {
                    let base = usize::try_from(response.id).unwrap_or(usize::MAX).saturating_mul(MAX_SEGMENTS);
                    let known = queue.finish(response.id, response.status, |buf| {
                        // One read chunk's pages are contiguous in the pool.
                        pool.read_bytes(base * PAGE_SIZE, buf);
                    });
                    if !known {
                        tracing::warn!(id = response.id, "response for no request in flight ignored");
                    }
                    progress.answered += 1;
                }
                Ok(None) => match ring.final_check_for_responses() {
                    Ok(true) => continue,
                    Ok(false) => break Ok(()),
                    Err(err) => break Err(err),
                },
                Err(err) => break Err(err),
            }
        };
        if result.is_ok() && issue {
            while !ring.is_full() {
                let Some((slot, chunk)) = queue.start_next() else { break };
                let first = usize::try_from(slot).unwrap_or(0) * MAX_SEGMENTS;
                if let ChunkKind::Write(data) = &chunk.kind {
                    pool.write_bytes(first * PAGE_SIZE, data);
                }
                let request = chunk.request(slot, &self.pool.refs()[first..first + MAX_SEGMENTS]);
                // Cannot fail: the ring is not full.
                let _ = ring.push_request(&request);
                progress.issued += 1;
            }
        }
        if ring.publish_requests() {
            if let Err(err) = self.notifier.notify() {
                tracing::warn!(%err, "could not notify the backend");
            }
        }
        self.cursors = ring.cursors();
        result.map(|()| progress)
    }
}
