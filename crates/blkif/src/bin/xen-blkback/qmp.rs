//! The QEMU Machine Protocol, as much of it as libxl asks of a PV
//! guest's device model, and the sockets it is served on.
//!
//! What libxl 4.17 sends (`libxl_qmp.c`, `libxl_dm.c`): it connects to
//! `/var/run/xen/qmp-libxl-<domid>`, reads the greeting (`{"QMP":
//! {"version": {"qemu": {...}}}}`, whose version it keeps), sends
//! `qmp_capabilities`, then one command per connection step, each
//! message ending in `\r\n` (its reader splits on it). After the device
//! model is up it asks `query-chardev` (serial ports to record: none
//! here), then `query-vnc` only if the guest has a framebuffer (refused
//! at start), and closes; a failure of either fails the domain's
//! creation. With `dm_restrict` it would start the model with `-S` and
//! ask `query-status` for `prelaunch` (refused at start, but answered).
//! libxenstat (`xentop`) may ask `query-blockstats` on
//! `qmp-libxenstat-<domid>`: answered with no devices. Save, migrate
//! and the rest are answered `CommandNotFound`.
//!
//! [`Session`] is the protocol without I/O: bytes in, reply bytes and
//! [`Effect`]s out. [`serve`] runs one listening socket in a thread,
//! one connection after another, as QEMU's chardev does.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use serde_json::{json, Map, Value};

/// The QEMU version the greeting claims: Debian 12's, which libxl 4.17
/// there is built against (libxl compares it only to choose among
/// commands this does not implement).
const QEMU_VERSION: (u32, u32, u32) = (7, 2, 0);

/// Most bytes of one message held waiting for its end.
const MAX_PENDING: usize = 64 * 1024;

/// What a command asks of the device model beyond its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `cont`: run (write the readiness node if not yet written).
    Cont,
    /// `quit`: exit.
    Quit,
}

/// One QMP connection: capability negotiation, then commands.
#[derive(Debug, Default)]
pub struct Session {
    negotiated: bool,
    pending: Vec<u8>,
}

impl Session {
    /// A connection that has just been accepted.
    pub fn new() -> Session {
        Session::default()
    }

    /// The greeting QEMU sends first.
    pub fn greeting() -> Vec<u8> {
        let (major, minor, micro) = QEMU_VERSION;
        let package = concat!("xen-blkback ", env!("CARGO_PKG_VERSION"));
        line(&json!({
            "QMP": {
                "version": { "qemu": { "major": major, "minor": minor, "micro": micro }, "package": package },
                "capabilities": []
            }
        }))
    }

    /// Takes `bytes` from the client; returns the replies to send and
    /// what the commands asked for. `running` is the state `query-status`
    /// reports. A message may arrive in pieces: the end is kept for the
    /// next call.
    pub fn feed(&mut self, bytes: &[u8], running: bool) -> (Vec<u8>, Vec<Effect>) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut effects = Vec::new();
        let mut used = 0;
        let mut stream = serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
        loop {
            match stream.next() {
                None => {
                    used = pending.len();
                    break;
                }
                Some(Ok(message)) => {
                    used = stream.byte_offset();
                    let (reply, effect) = self.answer(&message, running);
                    out.extend(line(&reply));
                    effects.extend(effect);
                }
                Some(Err(err)) if err.is_eof() => break,
                Some(Err(err)) => {
                    // QEMU's parser reports the error and starts over.
                    out.extend(line(&error("GenericError", &format!("JSON parse error, {err}"), None)));
                    used = pending.len();
                    break;
                }
            }
        }
        pending.drain(..used);
        if pending.len() > MAX_PENDING {
            out.extend(line(&error("GenericError", "JSON parse error, message too long", None)));
            pending.clear();
        }
        self.pending = pending;
        (out, effects)
    }

    fn answer(&mut self, message: &Value, running: bool) -> (Value, Option<Effect>) {
        let Some(object) = message.as_object() else {
            return (error("GenericError", "QMP input must be a JSON object", None), None);
        };
        let id = object.get("id");
        let Some(command) = object.get("execute").and_then(Value::as_str) else {
            return (error("GenericError", "QMP input lacks member 'execute'", id), None);
        };
        if !self.negotiated && command != "qmp_capabilities" {
            return (error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'", id), None);
        }
        let (result, effect) = match command {
            "qmp_capabilities" if self.negotiated => {
                let desc = "Capabilities negotiation is already complete, command ignored";
                return (error("CommandNotFound", desc, id), None);
            }
            "qmp_capabilities" => {
                self.negotiated = true;
                (json!({}), None)
            }
            "query-status" => {
                let status = if running { "running" } else { "prelaunch" };
                (json!({ "status": status, "singlestep": false, "running": running }), None)
            }
            "cont" => (json!({}), Some(Effect::Cont)),
            "quit" => (json!({}), Some(Effect::Quit)),
            "query-chardev" | "query-command-line-options" | "query-blockstats" => (json!([]), None),
            "query-vnc" => (json!({ "enabled": false }), None),
            "query-version" => {
                let (major, minor, micro) = QEMU_VERSION;
                let package = concat!("xen-blkback ", env!("CARGO_PKG_VERSION"));
                (json!({ "qemu": { "major": major, "minor": minor, "micro": micro }, "package": package }), None)
            }
            "query-commands" => {
                let names = [
                    "qmp_capabilities",
                    "query-status",
                    "cont",
                    "quit",
                    "query-chardev",
                    "query-command-line-options",
                    "query-blockstats",
                    "query-vnc",
                    "query-version",
                    "query-commands",
                ];
                (Value::Array(names.iter().map(|n| json!({ "name": n })).collect()), None)
            }
            other => return (error("CommandNotFound", &format!("The command {other} has not been found"), id), None),
        };
        let mut reply = Map::new();
        reply.insert("return".into(), result);
        if let Some(id) = id {
            reply.insert("id".into(), id.clone());
        }
        (Value::Object(reply), effect)
    }
}

/// A QMP error reply.
fn error(class: &str, desc: &str, id: Option<&Value>) -> Value {
    let mut reply = Map::new();
    reply.insert("error".into(), json!({ "class": class, "desc": desc }));
    if let Some(id) = id {
        reply.insert("id".into(), id.clone());
    }
    Value::Object(reply)
}

/// A message as sent: compact JSON and `\r\n`.
fn line(value: &Value) -> Vec<u8> {
    let mut out = value.to_string().into_bytes();
    out.extend_from_slice(b"\r\n");
    out
}

/// Listens on `path` (a stale socket there is removed first, as QEMU
/// does). The socket file is the caller's to remove.
pub fn listen(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    UnixListener::bind(path)
}

/// Serves `listener` in a new thread, one connection at a time, for the
/// life of the process; effects go to `effects`, `running` answers
/// `query-status`.
pub fn serve(listener: UnixListener, path: PathBuf, running: Arc<AtomicBool>, effects: Sender<Effect>) {
    let spawned = std::thread::Builder::new().name("qmp".into()).spawn(move || {
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::warn!(socket = %path.display(), %err, "QMP accept failed");
                    continue;
                }
            };
            tracing::debug!(socket = %path.display(), "QMP client connected");
            if stream.write_all(&Session::greeting()).is_err() {
                continue;
            }
            let mut session = Session::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (out, done) = session.feed(&buf[..n], running.load(Ordering::Acquire));
                let written = stream.write_all(&out);
                for effect in done {
                    let _ = effects.send(effect);
                }
                if written.is_err() {
                    break;
                }
            }
        }
    });
    if let Err(err) = spawned {
        tracing::warn!(%err, "could not start a QMP thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(bytes: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.is_empty() || text.ends_with("\r\n"), "every message ends in CRLF: {text:?}");
        text.split("\r\n").filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn the_greeting_carries_the_version_where_libxl_reads_it() {
        let greeting = &messages(&Session::greeting())[0];
        assert_eq!(greeting["QMP"]["version"]["qemu"], json!({ "major": 7, "minor": 2, "micro": 0 }));
        assert!(greeting["QMP"]["capabilities"].is_array());
    }

    #[test]
    fn libxls_startup_conversation_is_answered() {
        let mut session = Session::new();
        // libxl_qmp.c: qmp_prepare_cmd writes "<json>\r\n", ids count up.
        let (out, effects) = session
            .feed(b"{\"execute\":\"qmp_capabilities\",\"id\":1}\r\n{\"execute\":\"query-chardev\",\"id\":2}\r\n", true);
        assert_eq!(messages(&out), [json!({ "return": {}, "id": 1 }), json!({ "return": [], "id": 2 })]);
        assert!(effects.is_empty());
        let (out, _) = session.feed(b"{\"execute\":\"query-vnc\",\"id\":3}\r\n", true);
        assert_eq!(messages(&out), [json!({ "return": { "enabled": false }, "id": 3 })]);
    }

    #[test]
    fn a_message_in_pieces_is_answered_once_whole() {
        let mut session = Session::new();
        let (out, _) = session.feed(b"{\"execute\":\"qmp_capa", true);
        assert!(out.is_empty());
        let (out, _) = session.feed(b"bilities\",\"id\":\"a\"}", true);
        assert_eq!(messages(&out), [json!({ "return": {}, "id": "a" })]);
    }

    #[test]
    fn commands_before_negotiation_and_unknown_ones_are_errors_with_their_id() {
        let mut session = Session::new();
        let (out, _) = session.feed(b"{\"execute\":\"query-status\",\"id\":1}", true);
        assert_eq!(messages(&out)[0]["error"]["class"], "CommandNotFound");
        assert_eq!(messages(&out)[0]["id"], 1);
        session.feed(b"{\"execute\":\"qmp_capabilities\"}", true);
        let (out, _) = session.feed(b"{\"execute\":\"xen-save-devices-state\",\"id\":9}", true);
        let reply = &messages(&out)[0];
        assert_eq!((reply["error"]["class"].as_str(), &reply["id"]), (Some("CommandNotFound"), &json!(9)));
        let (out, _) = session.feed(b"[1,2]", true);
        assert_eq!(messages(&out)[0]["error"]["class"], "GenericError");
        let (out, _) = session.feed(b"{\"id\":4}", true);
        assert_eq!(messages(&out)[0]["id"], 4);
        let (out, _) = session.feed(b"}{", true);
        assert_eq!(messages(&out)[0]["error"]["class"], "GenericError", "a parse error starts over");
        let (out, _) = session.feed(b"{\"execute\":\"quit\"}", true);
        assert_eq!(messages(&out), [json!({ "return": {} })]);
    }

    #[test]
    fn status_cont_and_quit() {
        let mut session = Session::new();
        session.feed(b"{\"execute\":\"qmp_capabilities\"}", false);
        let (out, _) = session.feed(b"{\"execute\":\"query-status\",\"id\":1}", false);
        assert_eq!(
            messages(&out)[0]["return"],
            json!({ "status": "prelaunch", "singlestep": false, "running": false })
        );
        let (_, effects) = session.feed(b"{\"execute\":\"cont\",\"id\":2}", false);
        assert_eq!(effects, [Effect::Cont]);
        let (out, _) = session.feed(b"{\"execute\":\"query-status\",\"id\":3}", true);
        assert_eq!(messages(&out)[0]["return"]["status"], "running");
        let (_, effects) = session.feed(b"{\"execute\":\"quit\",\"id\":4}", true);
        assert_eq!(effects, [Effect::Quit]);
    }

    #[test]
    fn a_message_that_never_ends_is_dropped_past_the_bound() {
        let mut session = Session::new();
        let mut long = b"{\"execute\":\"".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_PENDING + 1));
        let (out, _) = session.feed(&long, true);
        assert_eq!(messages(&out)[0]["error"]["class"], "GenericError");
        let (out, _) = session.feed(b"{\"execute\":\"qmp_capabilities\"}", true);
        assert_eq!(messages(&out), [json!({ "return": {} })], "the session goes on");
    }

    #[test]
    fn a_socket_serves_one_client_after_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        std::fs::write(&path, b"stale").unwrap();
        let listener = listen(&path).unwrap();
        let (sink, effects) = std::sync::mpsc::channel();
        serve(listener, path.clone(), Arc::new(AtomicBool::new(true)), sink);
        for id in 0..2 {
            let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
            let mut greeting = String::new();
            std::io::BufRead::read_line(&mut reader, &mut greeting).unwrap();
            assert!(greeting.starts_with("{\"QMP\"") && greeting.ends_with("\r\n"));
            write!(client, "{{\"execute\":\"qmp_capabilities\",\"id\":{id}}}\r\n").unwrap();
            write!(client, "{{\"execute\":\"quit\",\"id\":{id}}}\r\n").unwrap();
            let mut reply = String::new();
            std::io::BufRead::read_line(&mut reader, &mut reply).unwrap();
            assert_eq!(messages(reply.as_bytes()), [json!({ "return": {}, "id": id })]);
        }
        assert_eq!(effects.recv_timeout(std::time::Duration::from_secs(5)), Ok(Effect::Quit));
    }
}
