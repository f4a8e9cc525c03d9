//! Containment of panics: a session that panics inside str0m (or anything it calls) is
//! dropped and counted, and the loop keeps serving every other session. A leaf module.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// `f` panicked; the value it was working on must be thrown away.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Panicked;

/// Runs `f`, turning a panic into [`Panicked`]. The caller must drop whatever `f`
/// mutated (it may be half-updated): that is why the unwind-safety assertion holds.
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a session whose str0m instance hits a bug on a given input.
    struct Fragile {
        handled: u32,
    }

    impl Fragile {
        fn handle(&mut self, input: &[u8]) -> u32 {
            if input.first() == Some(&0xff) {
                panic!("crafted input");
            }
            self.handled += 1;
            self.handled
        }
    }

    #[test]
    fn a_panicking_session_is_reported_and_the_others_keep_working() {
        let mut sessions = [Fragile { handled: 0 }, Fragile { handled: 0 }, Fragile { handled: 0 }];
        let inputs: [(usize, &[u8]); 5] = [(0, b"a"), (1, &[0xff, 1]), (2, b"b"), (0, b"c"), (2, b"d")];
        let mut dropped = Vec::new();
        for (i, input) in inputs {
            if dropped.contains(&i) {
                continue;
            }
            match contain(|| sessions[i].handle(input)) {
                Ok(_) => {}
                Err(Panicked) => dropped.push(i),
            }
        }
        assert_eq!(dropped, vec![1]);
        assert_eq!((sessions[0].handled, sessions[2].handled), (2, 2));
        assert_eq!(contain(|| 7), Ok(7));
    }
}
