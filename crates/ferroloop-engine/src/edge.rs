//! Level-triggered transports on an edge-triggered reactor.
//!
//! asyncio's stream transports are driven by level-triggered readiness: as
//! long as data waits, the reader callback runs once per iteration. mio
//! reports an edge once. [`EdgeReader`] keeps what is needed to behave as if
//! the readiness were level-triggered:
//!
//! * an edge that arrives while reading is paused (or before it started) is
//!   remembered and acted on when reading starts again;
//! * a read that filled the whole buffer is followed by another in the next
//!   iteration (more may be waiting); a shorter read drained the socket, and
//!   new data will raise a new edge;
//! * once the peer has closed, a short read is followed by another all the
//!   same: the EOF may sit behind the data that came with the edge;
//! * writable edges matter only while unsent data waits.
//!
//! The transport owns one of these and asks it what to do; the decisions are
//! tested here without a socket.

/// What a readiness event calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Wants {
    pub read: bool,
    pub write: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct EdgeReader {
    /// Reads are dispatched (asyncio: the reader is registered).
    reading: bool,
    /// A readable edge arrived while not reading.
    pending: bool,
    /// The reactor reported the peer's close.
    peer_closed: bool,
    /// Unsent data waits for a writable edge.
    want_write: bool,
}

impl EdgeReader {
    pub fn reading(&self) -> bool {
        self.reading
    }

    pub fn want_write(&self) -> bool {
        self.want_write
    }

    pub fn set_want_write(&mut self, on: bool) {
        self.want_write = on;
    }

    /// A readiness event from the reactor.
    pub fn on_ready(&mut self, readable: bool, writable: bool, read_closed: bool) -> Wants {
        self.peer_closed |= read_closed;
        let read = readable && self.reading;
        if readable && !self.reading {
            self.pending = true;
        }
        Wants { read, write: writable && self.want_write }
    }

    /// Reading starts (or resumes). True: a read must be queued now, for the
    /// edge that came while not reading will not come again.
    pub fn start(&mut self) -> bool {
        self.reading = true;
        std::mem::take(&mut self.pending)
    }

    /// Reading stops (pause, close, EOF kept open).
    pub fn stop(&mut self) {
        self.reading = false;
    }

    /// A queued read is about to run. False: reading stopped since it was
    /// queued; the data still waits and no new edge will come, so the read
    /// is remembered for when reading starts again.
    pub fn begin_read(&mut self) -> bool {
        if !self.reading {
            self.pending = true;
        }
        self.reading
    }

    /// A read of `n` bytes into a buffer of `capacity` finished (n > 0).
    /// True: read again next iteration.
    pub fn read_again(&self, n: usize, capacity: usize) -> bool {
        n == capacity || self.peer_closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> EdgeReader {
        let mut e = EdgeReader::default();
        assert!(!e.start());
        e
    }

    #[test]
    fn an_edge_while_reading_is_read_at_once() {
        let mut e = started();
        assert_eq!(e.on_ready(true, false, false), Wants { read: true, write: false });
    }

    #[test]
    fn an_edge_while_paused_is_kept_for_the_resume_and_acted_on_once() {
        let mut e = started();
        e.stop();
        assert_eq!(e.on_ready(true, false, false), Wants::default());
        assert!(e.start(), "resuming reads the data that came while paused");
        e.stop();
        assert!(!e.start(), "only once");
    }

    #[test]
    fn an_edge_before_reading_started_is_kept() {
        let mut e = EdgeReader::default();
        e.on_ready(true, true, false);
        assert!(e.start());
    }

    #[test]
    fn a_read_queued_before_a_pause_is_deferred_to_the_resume() {
        let mut e = started();
        assert!(e.on_ready(true, false, false).read);
        e.stop();
        assert!(!e.begin_read());
        assert!(e.start());
        assert!(e.begin_read());
    }

    #[test]
    fn a_full_buffer_is_read_again_a_short_read_is_not() {
        let e = started();
        assert!(e.read_again(256 * 1024, 256 * 1024));
        assert!(!e.read_again(100, 256 * 1024));
    }

    #[test]
    fn after_the_peer_closed_a_short_read_is_read_again_to_find_the_eof() {
        let mut e = started();
        assert!(e.on_ready(true, false, true).read);
        assert!(e.read_again(4, 256 * 1024));
        // The close is remembered across later edges that do not repeat it.
        e.on_ready(true, false, false);
        assert!(e.read_again(1, 10));
    }

    #[test]
    fn writable_edges_matter_only_while_data_waits() {
        let mut e = started();
        assert!(!e.on_ready(false, true, false).write);
        e.set_want_write(true);
        assert_eq!(e.on_ready(false, true, false), Wants { read: false, write: true });
        e.set_want_write(false);
        assert!(!e.on_ready(true, true, false).write);
    }
}
