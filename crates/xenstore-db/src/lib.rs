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
//! - Transactions conflict only when a node they depended on changed
//!   (the rule and why it is safe are in `src/tx.rs` and `docs/DESIGN.md`).
//! - Watches are indexed by path ([`watch`]): an event costs O(depth), not
//!   O(watches).
//! - Each domain keeps a count of the nodes it owns, not their paths: the
//!   `nodes` quota needs only the count, and domain removal searches the
//!   store only when the domain still owns something (a toolstack removes
//!   the domain's home first), saving one set entry per node.

#![forbid(unsafe_code)]

pub mod access;
pub mod children;
mod commit;
mod control;
mod ctx;
pub mod domain;
pub mod effect;
mod engine;
mod engine_domain;
mod engine_watch;
mod event;
pub mod node;
pub mod quota;
mod route;
pub mod state;
mod state_import;
mod state_tree;
pub mod tree;
mod tx;
pub mod watch;

pub use access::Caller;
pub use effect::{DaemonCommand, Effect};
pub use engine::{features, Config, ConnId, Engine, Outcome, Usage};
pub use event::Delivery;
pub use quota::{QuotaExceeded, QuotaKind, Quotas};
pub use state::EngineState;
pub use state_import::{ImportError, StoreView};
