//! Media leg (skeleton; see issue 4).
