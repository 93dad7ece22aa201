//! Receiving straight into a new `bytes` object: what the stream transport
//! does for large reads and `sock_recv` does always.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

extern "C" {
    // Exported by libpython (not part of pyo3-ffi's public surface).
    fn _PyBytes_Resize(bytes: *mut *mut pyo3::ffi::PyObject, newsize: pyo3::ffi::Py_ssize_t) -> std::os::raw::c_int;
}

/// Below this a FIONREAD answer of "nothing queued" still gets this much
/// room: an EOF or EAGAIN needs none, and data that arrives in between is
/// read up to this size (the rest stays queued for the next read).
const MIN_HINT: usize = 16 * 1024;

/// How many bytes to allocate for a read of at most `max` bytes from a
/// stream socket: what it holds (FIONREAD), not `max`. A `max`-sized
/// allocation above glibc's mmap threshold (128 KiB) would be a fresh mmap
/// — page faults and zeroing — then an mremap and a munmap, for every read.
/// (Not for datagram sockets: a smaller buffer would cut the datagram.)
pub(crate) fn stream_read_size(fd: i32, max: usize) -> usize {
    let mut avail: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at
    // a live c_int; failure leaves it untouched.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut avail as *mut libc::c_int) };
    if r == 0 && avail > 0 {
        (avail as usize).min(max)
    } else {
        MIN_HINT.min(max)
    }
}

/// One `recv(fd, size)` into a new `bytes` of `size` bytes, shrunk to what
/// arrived. The outer error is Python's (allocation); the inner one the
/// syscall's, EAGAIN and EINTR included, for the caller to judge.
pub(crate) fn recv_new_bytes(py: Python<'_>, fd: i32, size: usize) -> PyResult<std::io::Result<Bound<'_, PyBytes>>> {
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new, uninitialised
    // bytes object of n bytes (or NULL with an exception); it is filled by
    // recv before anyone else can see it, then shrunk by _PyBytes_Resize,
    // which may move it (updating `obj`) or fail (leaving NULL and an
    // exception). On a failed recv the object is released unseen.
    unsafe {
        let mut obj = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size as pyo3::ffi::Py_ssize_t);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let n = libc::recv(fd, pyo3::ffi::PyBytes_AsString(obj).cast(), size, 0);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            pyo3::ffi::Py_DECREF(obj);
            return Ok(Err(e));
        }
        if (n as usize) < size && _PyBytes_Resize(&mut obj, n as pyo3::ffi::Py_ssize_t) < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Ok(Bound::from_owned_ptr(py, obj).cast_into_unchecked()))
    }
}
