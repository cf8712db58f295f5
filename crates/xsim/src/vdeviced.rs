//! How `vdevice` talks to `vdeviced`, Xen Share's device service in dom0
//! on real Xen: one request per connection to a Unix socket, the command
//! line's words one per line and an empty line after them; the answer
//! `ok` or `error` on its first line, then what to print.
//!
//! A request is the tool's own arguments (`create net 0 3 4`, `add 5 3`,
//! `remove 5 3`, `list`, `destroy 5`, `create block FILE 0 3`), after
//! `timeout SECS`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Where `vdeviced` listens.
pub const SOCKET: &str = "/run/xen/vdeviced.sock";

/// The longest request the service reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Sends `words` and returns what the service answered: `Ok(text)` for
/// `ok`, `Err` with its text for `error`.
pub fn ask(socket: &Path, words: &[String]) -> io::Result<Result<String, String>> {
    if words.iter().any(|w| w.contains('\n') || w.is_empty()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an argument is empty or holds a newline"));
    }
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e} (is vdeviced running in dom0?)", socket.display())))?;
    let mut request = String::new();
    for word in words {
        request.push_str(word);
        request.push('\n');
    }
    request.push('\n');
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    match answer.split_once('\n') {
        Some(("ok", text)) => Ok(Ok(text.to_owned())),
        Some(("error", text)) => Ok(Err(text.trim_end().to_owned())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("vdeviced answered {answer:?}"))),
    }
}

/// Reads one request's words from `stream` (up to [`MAX_REQUEST`]
/// bytes): `InvalidData` for anything else.
pub fn read_request(stream: impl Read) -> io::Result<Vec<String>> {
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64));
    let mut words = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the request ended before its empty line"));
        }
        let word = line.strip_suffix('\n').unwrap_or(&line);
        if word.is_empty() {
            return Ok(words);
        }
        words.push(word.to_owned());
    }
}

/// Writes the answer to a request.
pub fn answer(mut stream: impl Write, result: &Result<String, String>) -> io::Result<()> {
    let text = match result {
        Ok(text) => format!("ok\n{text}"),
        Err(why) => format!("error\n{why}\n"),
    };
    stream.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_its_words_and_nothing_else_passes() {
        let words = read_request(&b"create\nblock\n/a file\n0\n3\n\nrest"[..]).unwrap();
        assert_eq!(words, ["create", "block", "/a file", "0", "3"]);
        assert!(read_request(&b"list\n"[..]).is_err(), "no empty line");
        assert!(read_request(&vec![b'x'; MAX_REQUEST + 10][..]).is_err());
    }
}
