//! Load generator (filled by issue #9).
