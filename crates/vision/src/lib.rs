//! Object detection (skeleton; see issue 3).
