//! A fault-injecting TCP proxy for loopback tests: every byte between two
//! nodes (or a client and a node) goes through it, and a test can cut the link,
//! hold it silently (a network partition: no reset, bytes wait in the kernel
//! buffers and arrive after healing, as TCP retransmission makes them do), or
//! slow it down.
//!
//! Plain threads and std sockets, so it works the same under any test runtime.
//! Mode changes wake the copying threads through a condition variable; nothing
//! polls with sleeps.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Result;

/// What the link does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Bytes flow (after `delay`, if set).
    Up,
    /// Bytes are held, connections stay open: a partition.
    Held,
    /// Only the bytes towards the target are held (the target hears
    /// nothing from the connecting side, which still hears the target).
    HeldToTarget,
    /// Only the bytes from the target are held (the connecting side hears
    /// nothing back, while the target still hears it).
    HeldFromTarget,
    /// Open connections are reset and new ones closed at once.
    Cut,
}

#[derive(Debug)]
struct Link {
    mode: LinkMode,
    delay: Duration,
    /// Bumped by every cut, so copiers of older connections stop.
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    link: Mutex<Link>,
    changed: Condvar,
    open: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
}

/// A running proxy from a loopback port to `target`.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `target`.
    pub fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            link: Mutex::new(Link {
                mode: LinkMode::Up,
                delay: Duration::ZERO,
                generation: 0,
            }),
            changed: Condvar::new(),
            open: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, target, s));
        Ok(Self {
            addr,
            target,
            shared,
        })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address traffic goes to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The current mode.
    pub fn mode(&self) -> LinkMode {
        self.shared
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mode
    }

    fn set(&self, f: impl FnOnce(&mut Link)) {
        let mut link = self.shared.link.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut link);
        self.shared.changed.notify_all();
    }

    /// Resets every open connection and closes new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.set(|l| {
            l.mode = LinkMode::Cut;
            l.generation += 1;
        });
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(|p| p.into_inner()));
        for s in open {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Holds every byte in both directions, connections open, until
    /// [`heal`](Self::heal): the peers see silence, as in a network partition.
    pub fn hold(&self) {
        self.set(|l| l.mode = LinkMode::Held);
    }

    /// Holds the bytes of one direction only: towards the target
    /// (`to_target`) or back from it; the other direction flows. A one-way
    /// partition.
    pub fn hold_one_way(&self, to_target: bool) {
        self.set(|l| {
            l.mode = if to_target {
                LinkMode::HeldToTarget
            } else {
                LinkMode::HeldFromTarget
            }
        });
    }

    /// Lets traffic flow again (held bytes are delivered).
    pub fn heal(&self) {
        self.set(|l| l.mode = LinkMode::Up);
    }

    /// Delays every chunk of bytes by `delay` (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.set(|l| l.delay = delay);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let generation = {
            let link = shared.link.lock().unwrap_or_else(|p| p.into_inner());
            if link.mode == LinkMode::Cut {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            link.generation
        };
        let Ok(server) = TcpStream::connect(target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let clones = [client.try_clone(), server.try_clone()];
        let [Ok(c2), Ok(s2)] = clones else { continue };
        {
            let mut open = shared.open.lock().unwrap_or_else(|p| p.into_inner());
            open.push(c2.try_clone().expect("clone of a connected socket"));
            open.push(s2.try_clone().expect("clone of a connected socket"));
        }
        let (a, b) = (shared.clone(), shared.clone());
        std::thread::spawn(move || copy(client, s2, a, generation, true));
        std::thread::spawn(move || copy(server, c2, b, generation, false));
    }
}

/// Waits until the link lets bytes through in its direction (`to_target`
/// or back); none when the connection was cut.
fn wait_up(shared: &Shared, generation: u64, to_target: bool) -> Option<Duration> {
    let mut link = shared.link.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if link.generation != generation || link.mode == LinkMode::Cut {
            return None;
        }
        let flows = match link.mode {
            LinkMode::Up => true,
            LinkMode::HeldToTarget => !to_target,
            LinkMode::HeldFromTarget => to_target,
            LinkMode::Held | LinkMode::Cut => false,
        };
        if flows {
            return Some(link.delay);
        }
        link = shared.changed.wait(link).unwrap_or_else(|p| p.into_inner());
    }
}

fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Shared>,
    generation: u64,
    to_target: bool,
) {
    let mut buf = vec![0u8; 64 << 10];
    // Held: stop reading, so bytes wait in the kernel (and the sender's
    // window fills) instead of being read and lost.
    while let Some(delay) = wait_up(&shared, generation, to_target) {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(delay) = wait_up(&shared, generation, to_target).map(|d| d.max(delay)) else {
            break;
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    /// Up passes bytes; held keeps them (nothing arrives, the connection
    /// stays) and delivers them on heal; cut resets open connections and
    /// refuses new ones until healed.
    #[test]
    fn hold_delivers_after_heal_and_cut_resets() {
        let proxy = FaultProxy::start(echo_server()).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(roundtrip(&mut s, b"one").unwrap(), b"one");

        proxy.hold();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(b"two").unwrap();
        let mut got = [0u8; 3];
        let err = s.read_exact(&mut got).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        proxy.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"two");

        proxy.cut();
        let mut byte = [0u8; 1];
        assert!(
            matches!(s.read(&mut byte), Ok(0) | Err(_)),
            "cut connection still open"
        );
        let mut fresh = TcpStream::connect(proxy.addr()).unwrap();
        fresh
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            roundtrip(&mut fresh, b"x").is_err(),
            "new connection served while cut"
        );
        proxy.heal();
        let mut healed = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(roundtrip(&mut healed, b"three").unwrap(), b"three");
    }
}
