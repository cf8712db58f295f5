//! Size limits of the protocol (`xs_wire.h`).

/// Largest payload in either direction. A peer that announces more has broken
/// the protocol: its connection is dropped (the ring's error indicator set).
pub const PAYLOAD_MAX: usize = 4096;

/// Longest absolute path accepted, in bytes.
pub const ABS_PATH_MAX: usize = 3072;

/// Longest relative path accepted, in bytes (also the default per-domain
/// path-length quota of the C daemon).
pub const REL_PATH_MAX: usize = 2048;
