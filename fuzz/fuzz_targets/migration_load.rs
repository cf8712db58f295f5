//! Arbitrary bytes loaded as a daemon state: `decode` never panics, and
//! whatever it accepts the engine imports, encodes again and decodes to the
//! same state.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_db::Engine;
use xenstore_migration::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(state) = decode(data) else {
        return;
    };
    let engine = Engine::import(state.engine.clone()).expect("decode returns only importable states");
    assert_eq!(engine.export(), state.engine);
    let again = encode(&state).expect("a decoded state encodes");
    assert_eq!(decode(&again).as_ref(), Ok(&state));
});
