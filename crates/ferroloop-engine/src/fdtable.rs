//! The loop's descriptor table: who waits on each descriptor, and what the
//! reactor must be told when that changes.
//!
//! A descriptor has a reader slot and a writer slot (asyncio's
//! `add_reader`/`add_writer` callbacks, a pending `sock_*` operation, a
//! datagram transport) and an owner slot (a stream transport, which always
//! listens both ways), plus caller-defined `extra` data (the bindings keep
//! the file object there, as asyncio's selector key does). Every change goes
//! through one of the methods below, which return the [`Change`] to apply to
//! the reactor: the rule "interest is the union of the slots; an empty entry
//! leaves the table and the reactor" is written once, here.
//!
//! Nothing here drops a waiter: what leaves a slot is handed back, so that
//! the caller can drop it (a Python object, maybe) after its own borrows end.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::RawFd;

/// The table's hash: one multiplication. The keys are this process's own
/// descriptor numbers, so the default SipHash's resistance to chosen keys
/// buys nothing, and it was a fifth of the loop's own instructions per echo
/// request (the table is looked up for every readiness event).
#[derive(Default)]
struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i32(&mut self, fd: i32) {
        // Fibonacci hashing: the high bits (hashbrown's tag) and the low bits
        // (its bucket index) both vary with small consecutive numbers.
        self.0 = (u64::from(fd as u32) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type FdMap<V> = HashMap<RawFd, V, BuildHasherDefault<FdHasher>>;

/// Which ways the reactor must watch a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

/// What the reactor must do after a table change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing (the descriptor was never registered and still is not).
    None,
    /// Register or re-register with this interest; `known`: it was in the
    /// table before (so it is believed registered).
    Interest { interest: Interest, known: bool },
    /// Forget the descriptor.
    Deregister,
}

/// One descriptor's registrations.
#[derive(Debug)]
pub struct Entry<W, O, X> {
    pub reader: Option<W>,
    pub writer: Option<W>,
    pub owner: Option<O>,
    pub extra: X,
}

impl<W, O, X: Default> Default for Entry<W, O, X> {
    fn default() -> Self {
        Entry { reader: None, writer: None, owner: None, extra: X::default() }
    }
}

impl<W, O, X> Entry<W, O, X> {
    /// An owner listens both ways; a slot listens its own way.
    pub fn interest(&self) -> Interest {
        let o = self.owner.is_some();
        Interest { read: self.reader.is_some() || o, write: self.writer.is_some() || o }
    }

    fn is_empty(&self) -> bool {
        self.reader.is_none() && self.writer.is_none() && self.owner.is_none()
    }

    pub fn slot(&self, write: bool) -> Option<&W> {
        if write {
            self.writer.as_ref()
        } else {
            self.reader.as_ref()
        }
    }

    fn slot_mut(&mut self, write: bool) -> &mut Option<W> {
        if write {
            &mut self.writer
        } else {
            &mut self.reader
        }
    }
}

/// What a stale entry held when an owner took its descriptor over.
pub type Stale<W, X> = (Option<W>, Option<W>, X);

pub struct FdTable<W, O, X = ()> {
    map: FdMap<Entry<W, O, X>>,
}

impl<W, O, X: Default> Default for FdTable<W, O, X> {
    fn default() -> Self {
        FdTable { map: FdMap::default() }
    }
}

impl<W, O, X: Default> FdTable<W, O, X> {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, fd: RawFd) -> Option<&Entry<W, O, X>> {
        self.map.get(&fd)
    }

    pub fn contains(&self, fd: RawFd) -> bool {
        self.map.contains_key(&fd)
    }

    /// The interest to re-arm `fd` with, if it is watched at all (after a
    /// level-triggered callback ran, readiness still present is reported
    /// again by re-registering).
    pub fn rearm(&self, fd: RawFd) -> Option<Interest> {
        self.map.get(&fd).map(Entry::interest).filter(|i| i.read || i.write)
    }

    /// The first descriptor whose entry satisfies `pred`.
    pub fn find(&self, mut pred: impl FnMut(&Entry<W, O, X>) -> bool) -> Option<RawFd> {
        self.map.iter().find(|(_, e)| pred(e)).map(|(fd, _)| *fd)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry<W, O, X>> {
        self.map.values()
    }

    /// Empty the table (loop close); the caller drops the entries.
    pub fn take_all(&mut self) -> Vec<Entry<W, O, X>> {
        self.map.drain().map(|(_, e)| e).collect()
    }

    fn settle(&mut self, fd: RawFd, known: bool) -> Change {
        let Some(e) = self.map.get(&fd) else {
            return if known { Change::Deregister } else { Change::None };
        };
        let interest = e.interest();
        if e.is_empty() {
            self.map.remove(&fd);
        }
        if interest.read || interest.write {
            Change::Interest { interest, known }
        } else if known {
            Change::Deregister
        } else {
            Change::None
        }
    }

    /// Put `w` into one slot of `fd` (or empty the slot with `None`); the
    /// waiter it replaces is returned. `extra` may update the entry's data.
    pub fn put(&mut self, fd: RawFd, write: bool, w: Option<W>, extra: impl FnOnce(&mut X)) -> (Option<W>, Change) {
        let known = self.map.contains_key(&fd);
        if w.is_none() && !known {
            return (None, Change::None);
        }
        let e = self.map.entry(fd).or_default();
        if w.is_some() {
            extra(&mut e.extra);
        }
        let old = std::mem::replace(e.slot_mut(write), w);
        (old, self.settle(fd, known))
    }

    /// Take one slot's waiter out if `pred` accepts it (a finished
    /// operation leaving, a job claiming its operation). The reactor is left
    /// as it is: the next event for a descriptor nobody waits on is ignored.
    pub fn take_if(&mut self, fd: RawFd, write: bool, pred: impl FnOnce(&W) -> bool) -> Option<W> {
        let e = self.map.get_mut(&fd)?;
        let slot = e.slot_mut(write);
        if slot.as_ref().is_some_and(pred) {
            slot.take()
        } else {
            None
        }
    }

    /// Give a waiter taken with [`FdTable::take_if`] its slot back, unless
    /// something else took the slot meanwhile (then `w` is returned).
    pub fn restore(&mut self, fd: RawFd, write: bool, w: W) -> Option<W> {
        match self.map.get_mut(&fd) {
            Some(e) if e.slot(write).is_none() => {
                *e.slot_mut(write) = Some(w);
                None
            }
            _ => Some(w),
        }
    }

    /// An owner takes `fd` over. A stale entry for a reused descriptor
    /// number is cleared: its waiters belonged to a file that no longer
    /// exists. Returns the previous owner and the stale waiters.
    pub fn set_owner(&mut self, fd: RawFd, owner: O) -> (Option<O>, Stale<W, X>, Change) {
        let known = self.map.contains_key(&fd);
        let e = self.map.entry(fd).or_default();
        let stale = (e.reader.take(), e.writer.take(), std::mem::take(&mut e.extra));
        let old = e.owner.replace(owner);
        (old, stale, self.settle(fd, known))
    }

    /// The owner lets `fd` go (waiters in its slots stay registered).
    pub fn clear_owner(&mut self, fd: RawFd) -> (Option<O>, Change) {
        let Some(e) = self.map.get_mut(&fd) else { return (None, Change::None) };
        let old = e.owner.take();
        if old.is_none() {
            return (None, Change::None);
        }
        (old, self.settle(fd, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = FdTable<&'static str, &'static str, u32>;
    const R: Interest = Interest { read: true, write: false };
    const W: Interest = Interest { read: false, write: true };
    const RW: Interest = Interest { read: true, write: true };

    #[test]
    fn first_waiter_registers_and_the_last_one_deregisters() {
        let mut t = T::default();
        assert_eq!(t.put(5, false, Some("r"), |_| {}), (None, Change::Interest { interest: R, known: false }));
        assert_eq!(t.put(5, true, Some("w"), |_| {}), (None, Change::Interest { interest: RW, known: true }));
        assert_eq!(t.put(5, false, None, |_| {}), (Some("r"), Change::Interest { interest: W, known: true }));
        assert_eq!(t.put(5, true, None, |_| {}), (Some("w"), Change::Deregister));
        assert!(t.is_empty());
    }

    #[test]
    fn emptying_an_unknown_descriptor_changes_nothing() {
        let mut t = T::default();
        assert_eq!(t.put(9, true, None, |x| *x = 1), (None, Change::None));
        assert!(t.is_empty());
    }

    #[test]
    fn replacing_a_waiter_hands_the_old_one_back() {
        let mut t = T::default();
        t.put(3, false, Some("a"), |_| {});
        assert_eq!(t.put(3, false, Some("b"), |_| {}), (Some("a"), Change::Interest { interest: R, known: true }));
        assert_eq!(t.get(3).unwrap().slot(false), Some(&"b"));
    }

    #[test]
    fn extra_is_set_by_a_waiter_and_kept_until_the_entry_goes() {
        let mut t = T::default();
        t.put(3, false, Some("a"), |x| *x = 42);
        t.put(3, true, Some("b"), |x| assert_eq!(*x, 42));
        assert_eq!(t.find(|e| e.extra == 42), Some(3));
        t.put(3, false, None, |_| unreachable!("not called for a removal"));
        t.put(3, true, None, |_| {});
        assert_eq!(t.find(|e| e.extra == 42), None);
    }

    #[test]
    fn an_owner_listens_both_ways_and_clears_a_stale_entry() {
        let mut t = T::default();
        t.put(4, true, Some("old writer"), |x| *x = 7);
        let (old, stale, change) = t.set_owner(4, "transport");
        assert_eq!(old, None);
        assert_eq!(stale, (None, Some("old writer"), 7));
        assert_eq!(change, Change::Interest { interest: RW, known: true });
        // A writer added on top (sendfile) keeps both ways; the owner leaving
        // leaves the writer registered.
        t.put(4, true, Some("sendfile"), |_| {});
        assert_eq!(t.clear_owner(4), (Some("transport"), Change::Interest { interest: W, known: true }));
        assert_eq!(t.clear_owner(4), (None, Change::None));
        assert_eq!(t.put(4, true, None, |_| {}).1, Change::Deregister);
    }

    #[test]
    fn owner_of_a_new_descriptor_registers_and_leaving_deregisters() {
        let mut t = T::default();
        assert_eq!(t.set_owner(8, "t").2, Change::Interest { interest: RW, known: false });
        assert_eq!(t.clear_owner(8), (Some("t"), Change::Deregister));
        assert!(t.is_empty());
    }

    #[test]
    fn take_if_claims_only_the_matching_waiter_and_restore_respects_newcomers() {
        let mut t = T::default();
        t.put(6, false, Some("op1"), |_| {});
        assert_eq!(t.take_if(6, false, |w| *w == "op2"), None);
        assert_eq!(t.take_if(6, true, |_| true), None, "the empty slot");
        assert_eq!(t.take_if(7, false, |_| true), None, "an unknown descriptor");
        let op = t.take_if(6, false, |w| *w == "op1").unwrap();
        // The entry stays (and so does the reactor's interest) while the
        // job holding the operation runs.
        assert!(t.contains(6));
        assert_eq!(t.restore(6, false, op), None);
        let op = t.take_if(6, false, |_| true).unwrap();
        t.put(6, false, Some("newcomer"), |_| {});
        assert_eq!(t.restore(6, false, op), Some("op1"));
        assert_eq!(t.get(6).unwrap().slot(false), Some(&"newcomer"));
    }

    #[test]
    fn rearm_reports_only_watched_descriptors() {
        let mut t = T::default();
        assert_eq!(t.rearm(1), None);
        t.put(1, true, Some("w"), |_| {});
        assert_eq!(t.rearm(1), Some(W));
        t.take_if(1, true, |_| true);
        assert_eq!(t.rearm(1), None, "an entry with empty slots is not re-armed");
    }
}
