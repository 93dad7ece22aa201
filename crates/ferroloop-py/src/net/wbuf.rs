//! The write buffer of the native stream transport.
//!
//! Data the socket did not take at once is queued here until a writable
//! edge. Large `bytes` objects are queued by reference (they are immutable),
//! not copied: a 10 MiB `transport.write()` that the kernel takes 2.5 MiB of
//! would otherwise copy the remaining 7.5 MiB once more before sending it.
//! Small writes and mutable buffers (bytearray, memoryview: the caller may
//! change them after `write()` returns) are copied, coalesced into owned
//! chunks. Flushing hands up to [`MAX_IOV`] chunks to one `sendmsg()`.

use std::collections::VecDeque;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{PyTraverseError, PyVisit};

/// `bytes` at least this large are queued by reference.
const SHARE_MIN: usize = 16 * 1024;
/// Owned chunks grow up to this size before a new one is started.
const COALESCE_MAX: usize = 256 * 1024;
/// Chunks per sendmsg() call.
const MAX_IOV: usize = 64;

enum Chunk {
    Owned(Vec<u8>),
    /// A `bytes` object, from byte `start` on.
    Shared(Py<PyBytes>, usize),
}

impl Chunk {
    /// The unsent bytes of this chunk, from `skip` on.
    fn slice(&self, py: Python<'_>, skip: usize) -> (*const u8, usize) {
        match self {
            Chunk::Owned(v) => (v[skip..].as_ptr(), v.len() - skip),
            Chunk::Shared(b, start) => {
                let s = b.bind(py).as_bytes();
                let from = start + skip;
                (s[from..].as_ptr(), s.len() - from)
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct WriteBuf {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    head_sent: usize,
    len: usize,
}

impl WriteBuf {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.head_sent = 0;
        self.len = 0;
    }

    /// Queue `rest`, the unsent tail of `data`. `shared` is `data` itself
    /// when it is a `bytes` object (and so can be kept instead of copied).
    pub(crate) fn push(&mut self, rest: &[u8], shared: Option<&Bound<'_, PyBytes>>) {
        if rest.is_empty() {
            return;
        }
        self.len += rest.len();
        if let Some(b) = shared.filter(|_| rest.len() >= SHARE_MIN) {
            let start = b.as_bytes().len() - rest.len();
            self.chunks.push_back(Chunk::Shared(b.clone().unbind(), start));
            return;
        }
        if let Some(Chunk::Owned(v)) = self.chunks.back_mut() {
            if v.len() + rest.len() <= COALESCE_MAX {
                v.extend_from_slice(rest);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(rest.to_vec()));
    }

    /// Send until empty or the socket would block. `Err` is the socket's
    /// error (EAGAIN/EINTR are not errors: they end the flush).
    pub(crate) fn flush(&mut self, py: Python<'_>, fd: i32) -> Result<(), std::io::Error> {
        let mut iov: [libc::iovec; MAX_IOV] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        while self.len > 0 {
            let mut cnt = 0;
            for (i, c) in self.chunks.iter().take(MAX_IOV).enumerate() {
                let (ptr, len) = c.slice(py, if i == 0 { self.head_sent } else { 0 });
                iov[i] = libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: len };
                cnt = i + 1;
            }
            // SAFETY: `iov[..cnt]` point into buffers owned by `self.chunks`
            // (Vecs, or bytes objects we hold references to), which are not
            // touched until sendmsg returns; the msghdr is fully initialised.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = cnt as _;
                libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(()),
                    _ => Err(e),
                };
            }
            self.consume(py, n as usize);
        }
        Ok(())
    }

    fn consume(&mut self, py: Python<'_>, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front().expect("sent more than was queued");
            let (_, avail) = front.slice(py, self.head_sent);
            if n >= avail {
                n -= avail;
                self.chunks.pop_front();
                self.head_sent = 0;
            } else {
                self.head_sent += n;
                n = 0;
            }
        }
        if self.len == 0 {
            self.clear();
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for c in &self.chunks {
            if let Chunk::Shared(b, _) = c {
                visit.call(b)?;
            }
        }
        Ok(())
    }
}

