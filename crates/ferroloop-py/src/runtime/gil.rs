//! Interior mutability for pyclasses that are `frozen`.
//!
//! Every ferroloop pyclass is `#[pyclass(frozen)]`: PyO3 then hands out `&T`
//! without touching its own borrow flag, and mutable state lives in a
//! [`GilCell`]. A `GilCell` is a `RefCell` that may be shared between threads
//! because every access happens with the GIL held: pyclass methods, GC
//! traversal and deallocation all run attached to the interpreter. A borrow
//! is never held across a call into Python (which could release the GIL or
//! re-enter the same object); re-entrancy bugs therefore show up as a
//! `RefCell` panic, which PyO3 turns into a Python exception, never as UB.

//
//! The module is declared `gil_used = true` (lib.rs): a free-threaded
//! interpreter re-enables the GIL when it imports ferroloop, which keeps this
//! reasoning valid there (docs/ARCHITECTURE.md, "Free-threaded Python").

use std::cell::{Ref, RefCell, RefMut};

pub(crate) struct GilCell<T>(RefCell<T>);

// SAFETY: see the module comment: all accesses are serialized by the GIL,
// and values are only moved between threads as the GIL moves.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        GilCell(RefCell::new(v))
    }
    #[inline]
    pub(crate) fn borrow(&self) -> Ref<'_, T> {
        self.0.borrow()
    }
    #[inline]
    pub(crate) fn borrow_mut(&self) -> RefMut<'_, T> {
        self.0.borrow_mut()
    }
    /// For GC traversal, which may run while the object is being mutated
    /// (an allocation inside a method can trigger a collection).
    #[inline]
    pub(crate) fn try_borrow(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}
