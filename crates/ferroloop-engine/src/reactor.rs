//! The I/O reactor and the cross-thread waker.
//!
//! One [`Reactor`] per loop wraps a mio `Poll` (epoll on Linux). Token 0 is
//! reserved for the [`mio::Waker`] that [`Wake::wake`] fires, so
//! `call_soon_threadsafe` from any thread interrupts a blocking poll. File
//! descriptors registered by the I/O half of the loop get the other tokens;
//! the engine reports readiness and leaves all policy to the bindings.
//!
//! `poll` is called at most once per loop iteration, like asyncio's
//! `selector.select()`. When nothing but the waker is registered and the
//! iteration must not block, the bindings skip the syscall (see
//! [`crate::iteration::plan_poll`]): there is no I/O to starve.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

pub const WAKER_TOKEN: Token = Token(0);

/// Readiness reported for one registered descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
    /// The peer closed its side (or the descriptor errored): with
    /// edge-triggered polling this is the only sign that EOF is waiting
    /// behind data read in the same edge.
    pub read_closed: bool,
}

pub struct Reactor {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
}

impl Reactor {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            waker,
        })
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Wait for readiness. `None` blocks until an event or a wake-up.
    /// Readiness (other than the waker's) is appended to `out`.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)?;
        for ev in self.events.iter() {
            if ev.token() == WAKER_TOKEN {
                continue;
            }
            out.push(Readiness {
                fd: (ev.token().0 - 1) as RawFd,
                readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                writable: ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                read_closed: ev.is_read_closed() || ev.is_error(),
            });
        }
        Ok(())
    }

    fn interest(readable: bool, writable: bool) -> Option<Interest> {
        match (readable, writable) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Set the interest for `fd` (token `fd + 1`). `known` says whether the
    /// caller believes `fd` is registered; a stale belief (the descriptor
    /// was closed and its number reused) is repaired by registering anew.
    /// Calling this again with the same interest re-arms the descriptor:
    /// mio is edge-triggered, and re-arming reports readiness that is still
    /// present, which is how level-triggered callbacks are emulated.
    pub fn set_interest(&mut self, fd: RawFd, readable: bool, writable: bool, known: bool) -> io::Result<()> {
        let token = Token(fd as usize + 1);
        let reg = self.poll.registry();
        let Some(interest) = Self::interest(readable, writable) else {
            if known {
                self.deregister(fd)?;
            }
            return Ok(());
        };
        if known {
            match reg.reregister(&mut SourceFd(&fd), token, interest) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        match reg.register(&mut SourceFd(&fd), token, interest) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => reg.reregister(&mut SourceFd(&fd), token, interest)?,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Forget `fd`. A descriptor that was already closed (and so dropped
    /// from epoll by the kernel) is not an error.
    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        match self.poll.registry().deregister(&mut SourceFd(&fd)) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EBADF)) => Ok(()),
            r => r,
        }
    }
}

/// The cross-thread wake-up of one loop: other threads (and signal-driven
/// code) call [`Wake::wake`] to interrupt a blocking poll. Work itself is
/// handed over in the loop's ready queue under the GIL; this only makes sure
/// a sleeping poll notices it, with one syscall per burst.
pub struct Wake {
    waker: Arc<Waker>,
    pending: AtomicBool,
}

impl Wake {
    pub fn new(waker: Arc<Waker>) -> Self {
        Wake { waker, pending: AtomicBool::new(false) }
    }

    /// Interrupt a blocking poll (at most one syscall until the loop calls
    /// [`Wake::clear`]).
    pub fn wake(&self) -> io::Result<()> {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// The loop has seen the wake-up: the next one fires the waker again.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }

    #[cfg(test)]
    fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn waker_interrupts_blocking_poll() {
        let mut r = Reactor::new().unwrap();
        let wake = Arc::new(Wake::new(r.waker()));
        let w2 = wake.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w2.wake().unwrap();
        });
        let start = Instant::now();
        let mut out = Vec::new();
        r.poll(Some(Duration::from_secs(10)), &mut out).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(out.is_empty(), "waker events are not reported as I/O");
        assert!(wake.is_pending());
        wake.clear();
        assert!(!wake.is_pending());
        t.join().unwrap();
    }

    #[test]
    fn a_burst_of_wakes_fires_the_waker_once_until_cleared() {
        let mut r = Reactor::new().unwrap();
        let wake = Wake::new(r.waker());
        for _ in 0..1000 {
            wake.wake().unwrap();
        }
        let mut out = Vec::new();
        r.poll(Some(Duration::from_millis(200)), &mut out).unwrap();
        // The one wake-up was consumed by that poll: the next one blocks
        // for its whole timeout, as no second syscall was made.
        let start = Instant::now();
        r.poll(Some(Duration::from_millis(30)), &mut out).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(29));
        wake.clear();
        wake.wake().unwrap();
        let start = Instant::now();
        r.poll(Some(Duration::from_secs(5)), &mut out).unwrap();
        assert!(start.elapsed() < Duration::from_secs(4), "cleared: the next wake fires again");
    }

    #[test]
    fn eof_behind_data_is_reported_with_the_same_edge() {
        let mut r = Reactor::new().unwrap();
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }, 0);
        r.set_interest(fds[0], true, true, false).unwrap();
        // SAFETY: writing from a valid buffer to our own socket, then closing it.
        unsafe {
            assert_eq!(libc::write(fds[1], b"data".as_ptr().cast(), 4), 4);
            libc::close(fds[1]);
        }
        let mut out = Vec::new();
        r.poll(Some(Duration::from_secs(1)), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].readable && out[0].read_closed);
        r.deregister(fds[0]).unwrap();
        // SAFETY: closing the descriptor socketpair gave us.
        unsafe { libc::close(fds[0]) };
    }

    #[test]
    fn timeout_poll_returns_after_deadline() {
        let mut r = Reactor::new().unwrap();
        let start = Instant::now();
        let mut out = Vec::new();
        r.poll(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn registered_fd_reports_readable() {
        let mut r = Reactor::new().unwrap();
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        r.set_interest(fds[0], true, false, false).unwrap();
        // SAFETY: fds[1] is the open write end; we write one byte from a
        // valid buffer.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        let mut out = Vec::new();
        r.poll(Some(Duration::from_secs(1)), &mut out).unwrap();
        assert_eq!(out, vec![Readiness { fd: fds[0], readable: true, writable: false, read_closed: false }]);
        // Edge-triggered: nothing new until re-armed; re-arming reports the
        // unread byte again (level-triggered emulation).
        out.clear();
        r.poll(Some(Duration::from_millis(10)), &mut out).unwrap();
        assert!(out.is_empty());
        r.set_interest(fds[0], true, false, true).unwrap();
        r.poll(Some(Duration::from_secs(1)), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        r.deregister(fds[0]).unwrap();
        // SAFETY: both descriptors came from pipe() above and are closed once.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
