//! The stepped test world (filled in by the next commit).
