//! Builds `shim.c`, the `LD_PRELOAD` library that answers the daemons'
//! hypervisor calls, once per source and machine: with `gcc` from
//! [`GCC`](crate::GCC) against the headers of [`LIBXEN_DEV`](crate::LIBXEN_DEV),
//! into this crate's build directory (`OUT_DIR`, in `target/`), or a private
//! temporary directory when that is gone (an installed `xs-bench`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::{path, Error, GCC, LIBXEN_DEV};

const SOURCE: &str = include_str!("shim.c");

/// The built shim, built now if it is not yet.
pub(crate) fn shim() -> Result<PathBuf, Error> {
    // One build at a time in this process; other processes are kept apart
    // by building under a private name and renaming into place.
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(so) = &*built {
        if so.exists() {
            return Ok(so.clone());
        }
    }
    crate::check(&[LIBXEN_DEV, GCC])?;
    let include = path("/usr/include");
    let gcc = path("/usr/bin/gcc");
    let mut hash = DefaultHasher::new();
    (SOURCE, &include, &gcc).hash(&mut hash);
    let name = format!("xs-peers-shim-{:016x}.so", hash.finish());

    let out_dir = PathBuf::from(env!("OUT_DIR"));
    let dir = if std::fs::create_dir_all(&out_dir).is_ok() && writable(&out_dir) {
        out_dir
    } else {
        // Kept for the life of this process: daemons started later load it.
        tempfile::Builder::new()
            .prefix("xs-peers-shim-")
            .tempdir()
            .map_err(|e| Error::Failed(format!("no directory for the shim: {e}")))?
            .keep()
    };
    let so = dir.join(&name);
    if !so.exists() {
        let source = dir.join(format!("shim-{}.c", std::process::id()));
        let partial = dir.join(format!("{name}.{}", std::process::id()));
        std::fs::write(&source, SOURCE).map_err(|e| Error::Failed(format!("write {}: {e}", source.display())))?;
        let out = Command::new(&gcc)
            .args(["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-I"])
            .arg(&include)
            .arg("-o")
            .arg(&partial)
            .arg(&source)
            .arg("-ldl")
            .output();
        let _ = std::fs::remove_file(&source);
        let out = out.map_err(|e| Error::Failed(format!("run {}: {e}", gcc.display())))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::Failed(format!(
                "the xs-peers shim did not compile:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        std::fs::rename(&partial, &so).map_err(|e| Error::Failed(format!("rename {}: {e}", partial.display())))?;
    }
    *built = Some(so.clone());
    Ok(so)
}

/// Whether files can be made in `dir`.
fn writable(dir: &std::path::Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}
