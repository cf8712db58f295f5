//! Arbitrary bytes loaded as a daemon state: `decode` never panics, the
//! engine imports whatever it accepts, and the imported engine's state
//! encodes and decodes back to itself. (The decoded state itself need not
//! be in the engine's canonical order when the extension was tampered
//! with: import sorts, e.g., a transaction's `seen` list.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_db::Engine;
use xenstore_migration::{decode, encode, DaemonState};

fuzz_target!(|data: &[u8]| {
    let Ok(state) = decode(data) else {
        return;
    };
    let engine = Engine::import(state.engine.clone()).expect("decode returns only importable states");
    let exported = DaemonState { engine: engine.export(), ..state };
    let again = encode(&exported).expect("an engine's state with its transports encodes");
    assert_eq!(decode(&again).as_ref(), Ok(&exported));
});
