//! The daemon out of file descriptors: once some are free again, a lone
//! new client is served (the listener is edge-triggered: a backlog left
//! after EMFILE announces nothing more).

mod support;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use support::*;
use xenstore_wire::Op;

#[test]
fn a_new_client_is_served_after_the_daemon_ran_out_of_descriptors() {
    let d = Daemon::start_with_nofile(40, &[]);
    // Far more connections than descriptors: the daemon accepts until
    // EMFILE, the rest wait in the backlog.
    let crowd: Vec<UnixStream> = (0..60).map(|_| UnixStream::connect(&d.socket).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(200));
    drop(crowd);
    std::thread::sleep(Duration::from_millis(200));
    let mut lone = d.client();
    lone.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    lone.send_raw(Op::GetDomainPath as u32, 0, b"3\0");
    let reply = lone.recv().expect("the lone client is answered");
    assert_eq!(reply.payload, b"/local/domain/3\0");
}
