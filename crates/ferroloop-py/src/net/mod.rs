//! Networking: the native stream and datagram transports (over a shared
//! base), the `sock_*` operations, the TLS fast path, and their buffers.
//! They reach the scheduler through its I/O driver (a descriptor owner, a
//! slot waiter) and their own job kinds; it never names them.

pub(crate) mod datagram;
pub(crate) mod recv;
pub(crate) mod sockops;
pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod transport_base;
pub(crate) mod wbuf;
