//! The two wire protocols (filled in by the wire work).
