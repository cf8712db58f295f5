mod support;
use support::*;
use xenstore_wire::Op;

#[test]
fn smoke_write_read_dir_rm() {
    let mut w = World::new();
    w.write("dom0", "/a/b", "hello");
    assert_eq!(w.reply("dom0", 0, Op::Read, &p("/a/b")), Ok(b"hello".to_vec()));
    assert_eq!(w.reply("dom0", 0, Op::Directory, &p("/")), Ok(b"tool\0a\0".to_vec()));
    w.ok("dom0", Op::Rm, &p("/a"));
    assert!(w.engine.check().is_ok());
}
