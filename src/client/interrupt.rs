//! Giving up a blocking call at the caller's word. A program that waits in
//! a client call (a Python interpreter whose user pressed Ctrl-C) may want
//! it to end before its timeout: it sets a check for its thread, which the
//! calls of that thread ask at least every [`INTERRUPT_SLICE`] while they
//! wait, and whenever a signal interrupts the wait. A check that says yes
//! ends the call with [`ClientError::Interrupted`](super::ClientError).
//!
//! Without a check, a call waits in one piece, as before: no wake-ups.

use std::cell::RefCell;
use std::time::Duration;

/// The longest a thread with a check waits without asking it.
pub const INTERRUPT_SLICE: Duration = Duration::from_millis(100);

/// Asked whether the waiting call should give up.
pub type InterruptCheck = Box<dyn Fn() -> bool>;

thread_local! {
    static CHECK: RefCell<Option<InterruptCheck>> = const { RefCell::new(None) };
}

/// Sets (or with `None` removes) the calling thread's interrupt check. It
/// applies to the client calls this thread makes from now on.
pub fn set_interrupt_check(check: Option<InterruptCheck>) {
    CHECK.with(|c| *c.borrow_mut() = check);
}

/// Whether this thread's check asks to give up (never, without one).
pub(crate) fn interrupted() -> bool {
    // A check that itself made a client call would find its own cell
    // borrowed: it is not asked again from inside itself.
    CHECK.with(|c| {
        c.try_borrow()
            .ok()
            .is_some_and(|c| c.as_ref().is_some_and(|f| f()))
    })
}

/// How long the next wait may be, at most `left`: a slice of it when the
/// thread has a check to ask in between.
pub(crate) fn slice(left: Duration) -> Duration {
    let checked = CHECK.with(|c| c.try_borrow().ok().is_some_and(|c| c.is_some()));
    if checked {
        left.min(INTERRUPT_SLICE)
    } else {
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn the_check_is_per_thread_and_slices_the_wait() {
        let long = Duration::from_secs(10);
        assert_eq!(slice(long), long);
        assert!(!interrupted());
        let asked = Rc::new(Cell::new(0));
        let counter = asked.clone();
        set_interrupt_check(Some(Box::new(move || {
            counter.set(counter.get() + 1);
            counter.get() >= 2
        })));
        assert_eq!(slice(long), INTERRUPT_SLICE);
        assert_eq!(slice(Duration::from_millis(5)), Duration::from_millis(5));
        assert!(!interrupted());
        assert!(interrupted());
        std::thread::spawn(|| assert!(!interrupted() && slice(Duration::MAX) == Duration::MAX))
            .join()
            .unwrap();
        set_interrupt_check(None);
        assert!(!interrupted());
        assert_eq!(asked.get(), 2);
    }
}
