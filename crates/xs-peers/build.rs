//! Gives the library an `OUT_DIR`: a directory of this build, inside the
//! target directory, where `src/shim.rs` caches the shim it compiles at run
//! time (compiled then, not here, so that a missing `libxen-dev` or `gcc` is
//! a skipped test rather than a failed build).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
