//! PyO3 bindings of ferroloop: the `ferroloop._ferroloop` extension module.
//!
//! The rooms, each naming only the ones listed before it:
//! * [`runtime`] — the GIL cell, imports, contexts, registry, GC traversal;
//! * [`sched`] — handles, jobs, the I/O driver and `LoopCore` (the loop);
//! * [`aio`] — Future, Task, their type slots, `create_future`/`create_task`;
//! * [`net`] — transports, `sock_*`, TLS.
//!
//! This file only registers the module. See docs/ARCHITECTURE.md.

mod aio;
mod net;
mod runtime;
mod sched;

use pyo3::prelude::*;

// Needs the GIL: every GilCell relies on it (runtime/gil.rs). On a
// free-threaded interpreter this makes the import re-enable the GIL instead
// of racing.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    runtime::pyver::init(py);
    runtime::imports::init(py)?;
    runtime::contexts::verify_layout(py)?;
    sched::handle::verify_untrack(py)?;
    sched::loop_core::init();
    m.add_class::<sched::loop_core::LoopCore>()?;
    m.add_class::<sched::handle::Handle>()?;
    m.add_class::<sched::handle::TimerHandle>()?;
    m.add_class::<aio::future::Future>()?;
    m.add_class::<aio::future::FutureIter>()?;
    m.add_class::<aio::task::Task>()?;
    m.add_class::<net::stream::TransportCore>()?;
    m.add_class::<net::datagram::DatagramCore>()?;
    m.add_function(wrap_pyfunction!(runtime::registry::_enable_task_registry, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::registry::_live_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::contexts::_run_in_context, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::contexts::_context_read_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(aio::slots::_finalizer_guard_selftest, m)?)?;
    m.add_function(wrap_pyfunction!(net::tls::_tls_buffer_updated, m)?)?;
    m.add_function(wrap_pyfunction!(net::tls::_tls_get_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(net::tls::_tls_write, m)?)?;
    m.add_function(wrap_pyfunction!(net::tls::_register_tls_protocol, m)?)?;
    aio::slots::patch_types(py);
    aio::fastcall::install(py)?;
    Ok(())
}
