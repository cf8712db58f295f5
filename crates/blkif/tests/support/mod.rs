//! A stepped world for block devices: the real xenstored engine with
//! dom0 and guests (laid out as libxl lays them out), the platform's
//! in-memory twins for grants and event channels, one backend in dom0,
//! frontends in guests, image files in a temporary directory.

#![allow(dead_code)]

pub mod hostile;
pub mod linux;
/// The stepped world as a xenbus connection: xenbus's own test adapter.
#[path = "../../../xenbus/tests/support/world_conn.rs"]
pub mod world;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use blkif::{Blkback, Blkfront, FrontConfig, IoError, ServeConfig, Ticket};
use xen_platform::testing::{TestGrants, TestHypervisor};
use xen_platform::{DomId, DomainConfig, GrantRef, GrantedPages, Grants, MappedPages, Toolstack};
use xenbus::toolstack::{self, DeviceSpec};
use xenstore::Store;
use xenstored::testing::World;

pub use world::{write_home, Shared, WorldConn};

/// Everything of one test.
pub struct Rig {
    pub world: Shared,
    /// The toolstack's own dom0 connection.
    pub toolstack: WorldConn,
    pub hv: TestHypervisor,
    pub backend: Option<Blkback<WorldConn>>,
    pub fronts: BTreeMap<u16, Blkfront<WorldConn>>,
    /// Guests running a Linux-like frontend ([`linux::LinuxFront`]).
    pub linux: BTreeMap<u16, linux::LinuxFront>,
    pub dir: tempfile::TempDir,
    /// Grant mappings the backends made (calls of `map_grants` that
    /// succeeded), counted by [`CountingGrants`].
    pub backend_maps: Arc<AtomicUsize>,
    /// The grants the backends hold mapped now, by granting domain and
    /// reference (what Xen's `gnttab_try_end_foreign_access` asks).
    pub backend_live: Live,
    /// Which devices the backend serves.
    pub config: ServeConfig,
}

/// Grants mapped now: how many mappings of each `(granter, reference)`.
pub type Live = Arc<Mutex<BTreeMap<(DomId, GrantRef), usize>>>;

/// The twin's grants, counting the mappings made and keeping track of
/// the ones not yet unmapped.
#[derive(Debug)]
pub struct CountingGrants {
    inner: TestGrants,
    maps: Arc<AtomicUsize>,
    live: Live,
}

impl Grants for CountingGrants {
    fn grant_pages(&mut self, remote: DomId, count: usize, writable: bool) -> std::io::Result<GrantedPages> {
        self.inner.grant_pages(remote, count, writable)
    }

    fn map_grants(&mut self, remote: DomId, refs: &[GrantRef], writable: bool) -> std::io::Result<MappedPages> {
        let pages = self.inner.map_grants(remote, refs, writable)?;
        self.maps.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<(DomId, GrantRef)> = refs.iter().map(|&gref| (remote, gref)).collect();
        for key in &keys {
            *self.live.lock().unwrap().entry(*key).or_default() += 1;
        }
        let live = Arc::clone(&self.live);
        let (base, len) = (pages.base(), pages.len());
        // The twin's mapping is kept, and ended, by the closure: the
        // backend's unmap is seen when it happens.
        let unmap = Box::new(move |_: std::ptr::NonNull<u8>, _: usize| {
            drop(pages);
            let mut live = live.lock().unwrap();
            for key in &keys {
                if let Some(count) = live.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        live.remove(key);
                    }
                }
            }
        });
        // SAFETY: `base..base + len` is the twin's mapping `pages`, whole
        // pages and page-aligned as every MappedPages is; `pages` moved
        // into `unmap`, so nothing unmaps it before `unmap` runs, and
        // `unmap` ends it (by dropping `pages`).
        Ok(unsafe { MappedPages::from_raw(base, len, unmap) })
    }
}

impl Rig {
    /// A world with dom0 and a running backend of `backend/vbd`.
    pub fn new() -> Rig {
        Rig::serving(ServeConfig::default())
    }

    /// A world with dom0 and a running backend serving what `config`
    /// says.
    pub fn serving(config: ServeConfig) -> Rig {
        let world = Rc::new(RefCell::new(World::new()));
        let id = world.borrow_mut().dom0();
        let toolstack = WorldConn::new(&world, id);
        toolstack.mkdir("/local/domain/0/backend").unwrap();
        let mut rig = Rig {
            world,
            toolstack,
            hv: TestHypervisor::new(),
            backend: None,
            fronts: BTreeMap::new(),
            linux: BTreeMap::new(),
            dir: tempfile::tempdir().unwrap(),
            backend_maps: Arc::new(AtomicUsize::new(0)),
            backend_live: Arc::default(),
            config,
        };
        rig.start_backend();
        rig
    }

    /// Starts a backend process (a new dom0 connection and new handles).
    pub fn start_backend(&mut self) {
        let id = self.world.borrow_mut().dom0();
        let conn = WorldConn::new(&self.world, id);
        let events = self.hv.event_channels(0).unwrap();
        let grants = CountingGrants {
            inner: self.hv.grants(0),
            maps: Arc::clone(&self.backend_maps),
            live: Arc::clone(&self.backend_live),
        };
        let mut backend = Blkback::with_config(conn, 0, Box::new(grants), Box::new(events), self.config);
        backend.start().unwrap();
        self.backend = Some(backend);
    }

    /// The backend process dies: its handles and connection go, nothing
    /// is written to xenstore.
    pub fn kill_backend(&mut self) {
        let backend = self.backend.take().expect("a backend");
        let id = backend.bus().conn().id;
        drop(backend);
        self.world.borrow_mut().close(id);
    }

    /// Whether the backend holds grant `gref` of domain `granter` mapped.
    pub fn mapped(&self, granter: DomId, gref: GrantRef) -> bool {
        self.backend_live.lock().unwrap().contains_key(&(granter, gref))
    }

    /// How many grants the backend holds mapped now.
    pub fn mapped_count(&self) -> usize {
        self.backend_live.lock().unwrap().len()
    }

    /// Grant mappings the backends made so far.
    pub fn maps(&self) -> usize {
        self.backend_maps.load(Ordering::Relaxed)
    }

    pub fn backend(&mut self) -> &mut Blkback<WorldConn> {
        self.backend.as_mut().expect("a backend")
    }

    /// A new guest in both the store and the twin hypervisor, its home
    /// written as libxl writes it; returns its domid and connection.
    pub fn raw_guest(&mut self, name: &str) -> (u16, WorldConn) {
        let id = self.world.borrow_mut().create_guest(name);
        assert_eq!(self.world.borrow_mut().introduce(id).unwrap(), b"OK\0");
        let domid = self.world.borrow().domid(id);
        let config =
            DomainConfig { name: name.into(), program: vec![], env: vec![], cwd: None, netns: false, fuse: false };
        let new = self.hv.toolstack().create(&config).unwrap();
        assert_eq!(new.domid, domid, "the store and the twin number guests alike");
        write_home(&self.toolstack, domid);
        (domid, WorldConn::new(&self.world, id))
    }

    /// A guest running a block frontend.
    pub fn guest(&mut self, name: &str, config: FrontConfig) -> u16 {
        let (domid, conn) = self.raw_guest(name);
        let events = self.hv.event_channels(domid).unwrap();
        let mut front = Blkfront::new(conn, domid, Box::new(self.hv.grants(domid)), Box::new(events), config);
        front.start().unwrap();
        self.fronts.insert(domid, front);
        domid
    }

    /// A guest whose device `devid` (attached later) is driven by a
    /// Linux-like frontend with `params`.
    pub fn linux_guest(&mut self, name: &str, devid: u32, params: linux::LinuxParams) -> u16 {
        let (domid, conn) = self.raw_guest(name);
        let events = self.hv.event_channels(domid).unwrap();
        let dir = xenbus::paths::frontend_dir(domid, "vbd", devid);
        let live = Arc::clone(&self.backend_live);
        let front = linux::LinuxFront::new(domid, conn, dir, self.hv.grants(domid), events, params, live);
        self.linux.insert(domid, front);
        domid
    }

    /// The Linux-like frontend of guest `domid`.
    pub fn linux(&mut self, domid: u16) -> &mut linux::LinuxFront {
        self.linux.get_mut(&domid).expect("a Linux-like frontend")
    }

    pub fn front(&mut self, domid: u16) -> &mut Blkfront<WorldConn> {
        self.fronts.get_mut(&domid).expect("a frontend")
    }

    /// A zero-filled image of `sectors` sectors.
    pub fn image(&self, name: &str, sectors: u64) -> PathBuf {
        let path = self.dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(sectors * 512).unwrap();
        path
    }

    /// The device as libxl writes it for a disk of `image`.
    pub fn spec(&self, frontend: u16, devid: u32, image: &std::path::Path, mode: &str) -> DeviceSpec {
        let mut spec = DeviceSpec::new("vbd", devid, frontend, 0);
        spec.backend_keys = vec![
            ("params".into(), image.display().to_string()),
            ("mode".into(), mode.into()),
            ("type".into(), "phy".into()),
            ("dev".into(), "xvda".into()),
            ("device-type".into(), "disk".into()),
        ];
        spec.frontend_keys = vec![("virtual-device".into(), devid.to_string()), ("device-type".into(), "disk".into())];
        spec
    }

    /// A `qdisk` disk as libxl 4.17 writes it for a PV guest
    /// (`device_disk_add`): `params` `aio:<target>`, `type` `qdisk`,
    /// `discard-enable` 1 for a writable disk, and the frontend's
    /// `trusted` and `protocol`.
    pub fn qdisk_spec(&self, frontend: u16, devid: u32, image: &std::path::Path, mode: &str) -> DeviceSpec {
        let mut spec = DeviceSpec::new("vbd", devid, frontend, 0).with_backend_devtype("qdisk");
        let discard = if mode == "w" { "1" } else { "0" };
        spec.backend_keys = [
            ("params", format!("aio:{}", image.display())),
            ("removable", "0".into()),
            ("bootable", "1".into()),
            ("dev", "xvda".into()),
            ("type", "qdisk".into()),
            ("mode", mode.into()),
            ("device-type", "disk".into()),
            ("discard-enable", discard.into()),
            ("specification", "xen".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        spec.frontend_keys = [
            ("virtual-device", devid.to_string()),
            ("device-type", "disk".into()),
            ("trusted", "1".into()),
            ("protocol", "x86_64-abi".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        spec
    }

    /// Attaches `spec` and settles.
    pub fn attach_spec(&mut self, spec: &DeviceSpec) {
        toolstack::attach(&self.toolstack, spec).unwrap();
        self.settle();
    }

    /// Attaches a device and settles.
    pub fn attach(&mut self, frontend: u16, devid: u32, image: &std::path::Path, mode: &str) -> DeviceSpec {
        let spec = self.spec(frontend, devid, image, mode);
        toolstack::attach(&self.toolstack, &spec).unwrap();
        self.settle();
        spec
    }

    /// One step of the backend and of every frontend; the work done.
    pub fn step(&mut self) -> usize {
        let mut work = self.backend.as_mut().map_or(0, |b| b.step().unwrap());
        for front in self.fronts.values_mut() {
            work += front.step().unwrap();
        }
        for front in self.linux.values_mut() {
            work += front.step();
        }
        work
    }

    /// Steps until nothing happens (bounded); returns the rounds taken.
    pub fn settle(&mut self) -> usize {
        for round in 0..100_000 {
            if self.step() == 0 {
                return round;
            }
        }
        panic!("still busy after 100000 rounds");
    }

    /// Settles, then takes the result of `ticket`.
    pub fn finish(&mut self, domid: u16, devid: u32, ticket: Ticket) -> Result<Vec<u8>, IoError> {
        self.settle();
        self.front(domid).take(devid, ticket).expect("the operation is done once settled")
    }

    /// A `state` node, as text.
    pub fn state(&self, dir: &str) -> String {
        String::from_utf8(self.toolstack.read(&format!("{dir}/state")).unwrap()).unwrap()
    }

    /// A node's value as text, `None` if missing.
    pub fn read(&self, path: &str) -> Option<String> {
        self.toolstack.read(path).ok().map(|v| String::from_utf8(v).unwrap())
    }

    /// The backend's error node for a device.
    pub fn backend_error(&self, spec: &DeviceSpec) -> Option<String> {
        let dir = spec.backend_dir();
        self.read(&format!("/local/domain/0/error/{}/error", dir.trim_start_matches("/local/domain/0/")))
    }
}

/// A small deterministic generator (xorshift64*), so that runs repeat.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}
