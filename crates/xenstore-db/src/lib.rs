//! The XenStore store engine, with no I/O and no clock.
//!
//! A request goes in with the identity of its caller; a reply and the watch
//! events it causes come out ([`Engine::handle`]). Everything the protocol
//! specification (`docs/misc/xenstore.txt`) says about nodes, permissions,
//! transactions, watches, quotas and domain ownership lives here, so the
//! daemon is a thin loop that moves bytes. Determinism makes the engine easy
//! to test against a model and to fuzz.
//!
//! Design notes:
//! - The tree is nested persistent nodes, each holding its children under
//!   their leaf names ([`tree`], [`children`]): a transaction's snapshot
//!   costs O(1), a subtree is one node, and no node carries its full path.
//! - A node is small because a store holds a million of them: 48 bytes in
//!   one allocation, short values and leaf names inline ([`small`]), the
//!   children list and its generation behind one pointer ([`node`]; the
//!   figures are in `memory.rs` and `docs/benchmarks.md`).
//! - Transactions conflict only when a node they depended on changed
//!   (the rule and why it is safe are in `src/tx.rs` and `docs/DESIGN.md`).
//! - Watches are indexed by path ([`watch`]): an event costs O(depth), not
//!   O(watches).
//! - Each domain keeps a count of the nodes it owns, not their paths: the
//!   `nodes` quota needs only the count, and domain removal searches the
//!   store only when the domain still owns something (a toolstack removes
//!   the domain's home first), saving one set entry per node.
//!
//! Where each rule lives (one rule, one file; private modules by file name):
//!
//! | rule or request | file |
//! |---|---|
//! | dispatch (GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED and RESET_WATCHES inline), path canonicalisation, the store state | `engine.rs` |
//! | READ, DIRECTORY, DIRECTORY_PART, GET_PERMS, WRITE, MKDIR, RM, SET_PERMS | `node_ops.rs` (their context: `ctx.rs`) |
//! | every permission rule: rights, stale entries, effective lists, needed access, ENOENT versus EACCES, privileged-only requests, who sees an event, special-path permissions | [`permissions`] |
//! | every quota check | `quota_charge.rs` (kinds and values: [`quota`]) |
//! | GET_QUOTA, SET_QUOTA | `quota_requests.rs` |
//! | TRANSACTION_START, TRANSACTION_END | `commit.rs` (the conflict rule: `tx.rs`) |
//! | WATCH, UNWATCH | `watch_requests.rs` (index: [`watch`]; routing events: `route.rs`) |
//! | INTRODUCE, RELEASE, RESUME, SET_TARGET, GET/SET_FEATURE, domain shutdown and removal, owned-node counts | `domains.rs` (per-domain record: [`domain`]) |
//! | CONTROL | `control.rs` |
//! | which named domains exist (the hypervisor's answer, through the driver) | `existence.rs` |
//! | the consistency check | `check.rs` |
//! | what each domain uses (CONTROL `quota <domid>`, statistics) | `usage.rs` |
//! | what each thing held costs the `memory` quota, and the running totals | `memory.rs` |
//! | what a request applied, for a journal | [`applied`] (recorded where each change is made) |
//! | replaying a journal's entries (crash recovery) | [`replay`] |
//! | export and import of the whole state (live update) | [`state`] (import's checks: `state_import.rs`, `state_tree.rs`) |

#![forbid(unsafe_code)]

pub mod applied;
mod check;
pub mod children;
mod commit;
mod control;
mod ctx;
pub mod domain;
mod domains;
pub mod effect;
mod engine;
mod event;
mod existence;
mod memory;
pub mod node;
mod node_ops;
pub mod permissions;
pub mod quota;
mod quota_charge;
mod quota_requests;
pub mod replay;
mod route;
pub mod small;
pub mod state;
mod state_import;
mod state_tree;
pub mod tree;
mod tx;
mod usage;
pub mod watch;
mod watch_requests;

pub use applied::Applied;
pub use effect::{DaemonCommand, Effect, LiveUpdate, Rollback};
pub use engine::{Config, ConnId, Engine, Outcome};
pub use event::Delivery;
pub use existence::Exists;
/// The permission rules' former module name: `xenstore_db::access::*` paths
/// still work.
pub use permissions as access;
pub use permissions::Caller;
pub use quota::{QuotaExceeded, QuotaKind, Quotas};
pub use replay::ReplayError;
pub use state::EngineState;
pub use state_import::{ImportError, StoreView};
pub use usage::{DomainUsage, Usage};
/// The ring feature bits, defined in the wire crate.
pub use xenstore_wire::features;
