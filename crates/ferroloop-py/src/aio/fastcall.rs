//! `loop.create_task` as a raw `METH_FASTCALL | METH_KEYWORDS` function,
//! installed over the descriptor PyO3 made.
//!
//! Its signature takes `**kwargs` (a task factory gets them), and for such
//! a signature PyO3 switches to the tuple-and-dict convention, building an
//! argument tuple on every call: about 300 instructions of a
//! create_task + await (callgrind, 3.12). This entry point reads the vector
//! CPython hands it and calls the same Rust method. Its argument errors
//! carry asyncio's words, class name included (`BaseEventLoop.create_task()
//! missing 1 required positional argument: 'coro'`).
//!
//! The same treatment of `call_soon` (a fastcall method in PyO3 already)
//! was measured and bought nothing (905 vs ~900 instructions around the
//! Rust body), so the other methods keep PyO3's wrappers.
//!
//! It runs inside `Python::attach`, as a PyO3 method does, so that a `Py`
//! dropped inside is released at once and not queued for later, and inside
//! `catch_unwind`, so that a panic is a `PanicException`, never an abort.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;
use pyo3::types::{PyDict, PyString};

use crate::sched::loop_core::LoopCore;

/// A Python signature `(self, <positional...>, *, <keywords...>, **kwargs)`
/// (at most one positional and three keyword-only parameters).
struct Sig {
    /// asyncio's `__qualname__` of the method, for its error messages.
    qualname: &'static str,
    positional: &'static [&'static CStr],
    keywords: &'static [&'static CStr],
}

/// Arguments sorted into the signature's slots; pointers are borrowed from
/// the caller's vector for the duration of the call.
struct Args {
    positional: [*mut ffi::PyObject; 1],
    keywords: [*mut ffi::PyObject; 3],
    /// Keywords the signature does not name (its `**kwargs`).
    extra: Option<Py<PyDict>>,
}

/// Sort a vectorcall's arguments into `sig`'s slots, raising what CPython
/// raises for a Python function of that signature.
///
/// # Safety
/// `args` holds `nargs` positional then `len(kwnames)` keyword values, all
/// live; `kwnames` is NULL or a tuple of str (CPython's vectorcall contract).
unsafe fn parse(
    py: Python<'_>,
    sig: &Sig,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Args> {
    // SAFETY: per the vectorcall contract (above).
    let nargs = (unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) }) as usize;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: a tuple (the vectorcall contract).
        (unsafe { ffi::PyTuple_GET_SIZE(kwnames) }) as usize
    };
    let all: &[*mut ffi::PyObject] = if nargs + nkw == 0 {
        &[]
    } else {
        // SAFETY: `args` points at nargs + nkw live pointers.
        unsafe { std::slice::from_raw_parts(args, nargs + nkw) }
    };
    let npos = sig.positional.len();
    debug_assert!(sig.positional.len() <= 1 && sig.keywords.len() <= 3);
    let mut out = Args { positional: [std::ptr::null_mut(); 1], keywords: [std::ptr::null_mut(); 3], extra: None };
    let given = nargs.min(npos);
    out.positional[..given].copy_from_slice(&all[..given]);
    'names: for k in 0..nkw {
        // SAFETY: kwnames is a tuple of nkw str objects.
        let name = unsafe { ffi::PyTuple_GET_ITEM(kwnames, k as ffi::Py_ssize_t) };
        let value = all[nargs + k];
        for (i, p) in sig.positional.iter().enumerate() {
            if eq_ascii(name, p) {
                if i < nargs {
                    return Err(PyTypeError::new_err(format!("{}() got multiple values for argument '{}'", sig.qualname, text(p))));
                }
                out.positional[i] = value;
                continue 'names;
            }
        }
        for (j, kw) in sig.keywords.iter().enumerate() {
            if eq_ascii(name, kw) {
                out.keywords[j] = value;
                continue 'names;
            }
        }
        // SAFETY: a live str from kwnames.
        let name = unsafe { Bound::from_borrowed_ptr(py, name) };
        let extra = out.extra.get_or_insert_with(|| PyDict::new(py).unbind());
        // SAFETY: a live value from the vector.
        extra.bind(py).set_item(&name, unsafe { Bound::from_borrowed_ptr(py, value) })?;
    }
    // CPython's order: a duplicate first, then too many positionals
    // (naming the keyword-only arguments given), then missing ones.
    if nargs > npos {
        let kwonly = out.keywords.iter().filter(|p| !p.is_null()).count();
        let also = match kwonly {
            0 => String::new(),
            1 => " positional arguments (and 1 keyword-only argument)".to_owned(),
            k => format!(" positional arguments (and {k} keyword-only arguments)"),
        };
        return Err(PyTypeError::new_err(format!(
            "{}() takes {} positional arguments but {}{} were given",
            sig.qualname,
            npos + 1,
            nargs + 1,
            also
        )));
    }
    if let Some((name, _)) = sig.positional.iter().zip(out.positional.iter()).find(|(_, p)| p.is_null()) {
        return Err(PyTypeError::new_err(format!("{}() missing 1 required positional argument: '{}'", sig.qualname, text(name))));
    }
    Ok(out)
}

fn eq_ascii(name: *mut ffi::PyObject, expected: &CStr) -> bool {
    // SAFETY: `name` is a live str; `expected` is NUL-terminated ASCII.
    unsafe { ffi::PyUnicode_CompareWithASCIIString(name, expected.as_ptr()) == 0 }
}

fn text(name: &CStr) -> &str {
    name.to_str().unwrap_or("?")
}

/// A borrowed slot as an optional bound reference (None for an absent one).
fn opt<'py>(py: Python<'py>, p: *mut ffi::PyObject) -> Option<Bound<'py, PyAny>> {
    // SAFETY: a non-null slot is a live argument borrowed for the call.
    (!p.is_null()).then(|| unsafe { Bound::from_borrowed_ptr(py, p) })
}

/// Run one entry point's body the way a PyO3 method runs.
///
/// # Safety
/// Called by CPython through a method descriptor of LoopCore: `slf` is an
/// instance of LoopCore or of a subclass, the GIL is held.
unsafe fn enter(
    slf: *mut ffi::PyObject,
    body: impl FnOnce(&Bound<'_, LoopCore>) -> PyResult<*mut ffi::PyObject>,
) -> *mut ffi::PyObject {
    Python::attach(|py| {
        // SAFETY: the method descriptor checked the type of `slf`.
        let this = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
        let r = catch_unwind(AssertUnwindSafe(|| body(&this))).unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_owned());
            Err(pyo3::panic::PanicException::new_err(msg))
        });
        r.unwrap_or_else(|e| {
            e.restore(py);
            std::ptr::null_mut()
        })
    })
}

static CREATE_TASK: Sig =
    Sig { qualname: "BaseEventLoop.create_task", positional: &[c"coro"], keywords: &[c"name", c"context", c"eager_start"] };

macro_rules! entry {
    ($fn_name:ident, $sig:ident, |$py:ident, $this:ident, $a:ident| $body:expr) => {
        unsafe extern "C" fn $fn_name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargsf: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: CPython's METH_FASTCALL|METH_KEYWORDS contract, through
            // a LoopCore method descriptor (see `enter` and `parse`).
            unsafe {
                enter(slf, |$this| {
                    let $py = $this.py();
                    let $a = parse($py, &$sig, args, nargsf, kwnames)?;
                    $body
                })
            }
        }
    };
}

entry!(create_task, CREATE_TASK, |py, this, a| {
    let coro = opt(py, a.positional[0]).expect("required");
    let eager = match opt(py, a.keywords[2]) {
        Some(e) if !e.is_none() => Some(e.extract::<bool>()?),
        _ => None,
    };
    let extra = a.extra.as_ref().map(|d| d.bind(py).clone());
    LoopCore::create_task(this, &coro, opt(py, a.keywords[0]), opt(py, a.keywords[1]), eager, extra.as_ref()).map(Bound::into_ptr)
});

/// Replace PyO3's descriptor of create_task on LoopCore with the raw one.
/// The text signature is PyO3's (the stubs and `inspect` read it).
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    type Entry = (&'static CStr, ffi::PyCFunctionFastWithKeywords, &'static CStr);
    let entries: [Entry; 1] =
        [(c"create_task", create_task, c"create_task($self, coro, *, name=None, context=None, eager_start=None, **kwargs)\n--\n\n")];
    let ty = LoopCore::type_object_raw(py);
    for (name, f, doc) in entries {
        // The method table must outlive the type: leaked once, at import.
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: f },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr(),
        }));
        // SAFETY: `ty` is LoopCore's live heap type, not yet used by any
        // code; its tp_dict is a dict; PyType_Modified drops cached lookups.
        unsafe {
            let descr = Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty, def))?;
            let dict = Bound::from_borrowed_ptr(py, (*ty).tp_dict);
            dict.cast::<PyDict>()?.set_item(PyString::new(py, name.to_str().expect("ascii")), descr)?;
            ffi::PyType_Modified(ty);
        }
    }
    Ok(())
}
