//! Declares the `loom` cfg (set by `RUSTFLAGS="--cfg loom"` to run the loom
//! models) so that rustc does not warn about an unknown cfg.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
