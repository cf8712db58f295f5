//! The migration stream reader fed arbitrary bytes: it must never panic,
//! and whatever it accepts must write and read back to the same stream, in
//! both byte orders, and its text form (`xenstore-state dump`) must load
//! back to the same stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_migration::text::{from_text, to_text};
use xenstore_migration::{read, read_header, write, write_with, Endian, Header, Version};

fuzz_target!(|data: &[u8]| {
    let Ok(stream) = read(data) else {
        return;
    };
    assert_eq!(read(&write(&stream)).as_ref(), Ok(&stream));
    let big = Header {
        version: Version::V2,
        endian: Endian::Big,
    };
    let be = write_with(&stream, big).expect("version 2 carries every record");
    assert_eq!(read(&be).as_ref(), Ok(&stream));
    let header = read_header(data).expect("read checked the header");
    let text = to_text(header, &stream);
    assert_eq!(from_text(&text), Ok((header, stream)));
});
