//! Entity logic (filled next).
