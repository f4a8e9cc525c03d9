//! Helpers of `callsight detect` (filled in next).
