//! The TCP connections between the processes of a cluster that timely's workers exchange data
//! over, made by ember rather than by timely so that making them never hangs.
//!
//! Timely's own setup retries forever: a process whose peer died after the control plane met
//! would wait for it, printing "awaiting connections" once a second. Here the same connections
//! are made (the same wire handshake: process `i` connects to every process `j < i` and sends
//! its index as a big-endian `u64`; it accepts a connection from every process `j > i`), with a
//! deadline, and giving up as soon as the control plane reports a lost process. Timely then
//! builds its allocators on the connected sockets.
//!
//! With a cluster secret, the index is proven instead of only sent (see [`crate::auth`],
//! channel `mesh`): a connection that fails the proof is closed and logged with its remote
//! address, and the mesh goes on waiting for the real peer; a process whose own proof is
//! refused stops with an error naming the peer that refused it. Each accepted connection's
//! proof is checked on a thread of its own, so a stranger that connects and stays silent holds
//! up neither the real peers nor the deadline. With TLS ([`crate::transport::Tls`]) every
//! connection starts with a TLS handshake, and the proof runs inside it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use crate::auth::{AuthError, ClusterSecret};
use crate::transport::{self, Link, Tls};

/// How long a single connection attempt may take.
const ATTEMPT: Duration = Duration::from_millis(500);
/// How long to wait between rounds of attempts and accepts.
const POLL: Duration = Duration::from_millis(10);
/// How long a connecting peer may take to send its index.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Why the connections could not be made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MeshError {
    /// The control plane lost a process meanwhile (its message).
    Lost(String),
    /// The deadline passed; the processes not connected.
    Timeout(Vec<usize>),
    /// A local failure (cannot listen) or a peer that broke the handshake.
    Failed(String),
}

/// Connects this process (`me`) to every other of `addresses`, until `deadline` or until
/// `lost` reports a lost process. The result has a connected stream for every other process,
/// in process order, and `None` at `me` (as timely expects).
pub(crate) fn connect(
    addresses: &[String],
    me: usize,
    deadline: Instant,
    lost: &dyn Fn() -> Option<String>,
    secret: Option<&ClusterSecret>,
    tls: Option<&Tls>,
) -> Result<Vec<Option<Link>>, MeshError> {
    if tls.is_some() && secret.is_none() {
        return Err(MeshError::Failed(format!(
            "process {me}: TLS needs a cluster secret (it proves who is on the other side)"
        )));
    }
    let listener = TcpListener::bind(&addresses[me])
        .map_err(|e| MeshError::Failed(format!("process {me} cannot listen on {}: {e}", addresses[me])))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| MeshError::Failed(format!("process {me} cannot poll its listener: {e}")))?;
    let mut streams: Vec<Option<Link>> = (0..addresses.len()).map(|_| None).collect();
    // Connections whose proofs were checked on their own threads.
    let (checked_tx, checked): (Sender<(Link, u64, std::net::SocketAddr)>, Receiver<_>) = channel();
    loop {
        for (peer, address) in addresses.iter().enumerate().take(me) {
            if streams[peer].is_none() {
                streams[peer] = try_connect(address, me, deadline, secret, tls).map_err(|e| {
                    MeshError::Failed(format!(
                        "process {peer} at {address} refused the data connection of process {me}: {}",
                        transport::explain(&e)
                    ))
                })?;
            }
        }
        loop {
            match try_accept(&listener, me, secret, tls, &checked_tx)? {
                Accepted::Nothing => break,
                Accepted::Checking => {}
                Accepted::Peer(stream, peer, from) => add_peer(&mut streams, me, stream, peer, from)?,
            }
        }
        while let Ok((stream, peer, from)) = checked.try_recv() {
            add_peer(&mut streams, me, stream, peer, from)?;
        }
        let missing: Vec<usize> = (0..addresses.len()).filter(|p| *p != me && streams[*p].is_none()).collect();
        if missing.is_empty() {
            break;
        }
        if let Some(why) = lost() {
            return Err(MeshError::Lost(why));
        }
        if Instant::now() >= deadline {
            return Err(MeshError::Timeout(missing));
        }
        std::thread::sleep(POLL);
    }
    for stream in streams.iter().flatten() {
        // Timely's network threads block on their sockets.
        let stream = stream.socket();
        stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_write_timeout(None))
            .and_then(|()| stream.set_nonblocking(false))
            .map_err(|e| MeshError::Failed(format!("cannot set up a connection of process {me}: {e}")))?;
    }
    Ok(streams)
}

/// One attempt to connect to a lower-indexed process and send it our index (prove it, with a
/// secret); `Ok(None)` to try again later, an error when the peer refused our proof or did
/// not speak TLS.
fn try_connect(
    address: &str,
    me: usize,
    deadline: Instant,
    secret: Option<&ClusterSecret>,
    tls: Option<&Tls>,
) -> Result<Option<Link>, AuthError> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(1), ATTEMPT);
    let Ok(resolved) = address.to_socket_addrs() else { return Ok(None) };
    for candidate in resolved {
        if let Ok(mut stream) = TcpStream::connect_timeout(&candidate, timeout) {
            if stream.set_nodelay(true).is_err() {
                continue;
            }
            match secret {
                Some(secret) => match transport::connect(stream, secret, tls, "mesh", me as u64, HANDSHAKE) {
                    Ok(link) => return Ok(Some(link)),
                    Err(AuthError::Io(_)) => {}
                    Err(AuthError::Tls(e)) if e.kind() != io::ErrorKind::InvalidData => {}
                    Err(refused) => return Err(refused),
                },
                None => {
                    let sent = stream
                        .set_write_timeout(Some(HANDSHAKE))
                        .and_then(|()| stream.write_all(&(me as u64).to_be_bytes()));
                    if sent.is_ok() {
                        return Ok(Some(Link::Plain(stream)));
                    }
                }
            }
        }
    }
    Ok(None)
}

/// What one accept found.
enum Accepted {
    /// No connection is pending.
    Nothing,
    /// A connection whose proof a thread of its own is checking (its peer comes through the
    /// channel if it passes; it is closed and logged if not).
    Checking,
    /// A peer, its index and address.
    Peer(Link, u64, std::net::SocketAddr),
}

/// Records the connection of process `peer`, which must be a higher-indexed one not yet
/// connected.
fn add_peer(streams: &mut [Option<Link>], me: usize, stream: Link, peer: u64, from: std::net::SocketAddr) -> Result<(), MeshError> {
    let processes = streams.len();
    if peer <= me as u64 || peer >= processes as u64 {
        return Err(MeshError::Failed(format!(
            "a connection from {from} says it is process {peer}, but only processes {} to {} connect to process {me}",
            me + 1,
            processes - 1
        )));
    }
    let slot = &mut streams[peer as usize];
    if slot.is_some() {
        return Err(MeshError::Failed(format!("process {peer} connected to process {me} twice")));
    }
    *slot = Some(stream);
    Ok(())
}

/// Accepts one pending connection from a higher-indexed process and reads its index, or with
/// a secret starts checking its proof on a thread of its own (the peer then comes through
/// `checked`).
fn try_accept(
    listener: &TcpListener,
    me: usize,
    secret: Option<&ClusterSecret>,
    tls: Option<&Tls>,
    checked: &Sender<(Link, u64, std::net::SocketAddr)>,
) -> Result<Accepted, MeshError> {
    let (mut stream, from) = match listener.accept() {
        Ok(accepted) => accepted,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => return Ok(Accepted::Nothing),
        Err(e) => return Err(MeshError::Failed(format!("process {me} cannot accept a connection: {e}"))),
    };
    let set_up = stream.set_nonblocking(false).and_then(|()| stream.set_nodelay(true));
    let peer = match secret {
        Some(secret) => {
            let (secret, tls, checked) = (secret.clone(), tls.cloned(), checked.clone());
            let check = move || match set_up
                .map_err(AuthError::Io)
                .and_then(|()| transport::accept(stream, &secret, tls.as_ref(), "mesh", HANDSHAKE))
            {
                // The mesh may be done (or gone) meanwhile: then nobody wants the peer.
                Ok((link, peer)) => drop(checked.send((link, peer, from))),
                // Dropping the connection closes it.
                Err(e) => {
                    tracing::warn!(remote = %from, process = me, problem = %e, "Refused a data connection that did not prove the cluster secret.");
                }
            };
            std::thread::Builder::new()
                .name("ember-mesh-auth".into())
                .spawn(check)
                .map_err(|e| MeshError::Failed(format!("process {me} cannot start a thread to check a connection: {e}")))?;
            return Ok(Accepted::Checking);
        }
        None => {
            let mut index = [0u8; 8];
            set_up
                .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE)))
                .and_then(|()| stream.read_exact(&mut index))
                .map_err(|e| MeshError::Failed(format!("a connection from {from} to process {me} sent no process index: {e}")))?;
            u64::from_be_bytes(index)
        }
    };
    Ok(Accepted::Peer(Link::Plain(stream), peer, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth;

    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect()
    }

    #[test]
    fn three_processes_connect_to_each_other() {
        let addresses = free_addresses(3);
        let deadline = Instant::now() + Duration::from_secs(10);
        let handles: Vec<_> = (0..3)
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::spawn(move || connect(&addresses, me, deadline, &|| None, None, None))
            })
            .collect();
        for (me, handle) in handles.into_iter().enumerate() {
            let streams = handle.join().unwrap().unwrap();
            assert_eq!(streams.len(), 3);
            for (peer, stream) in streams.iter().enumerate() {
                assert_eq!(stream.is_some(), peer != me, "process {me}, peer {peer}");
            }
        }
    }

    #[test]
    fn a_missing_peer_times_out_naming_it() {
        let addresses = free_addresses(2);
        let started = Instant::now();
        let error = connect(&addresses, 0, Instant::now() + Duration::from_millis(200), &|| None, None, None).unwrap_err();
        assert_eq!(error, MeshError::Timeout(vec![1]));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_lost_peer_ends_the_wait_at_once() {
        let addresses = free_addresses(2);
        let started = Instant::now();
        let error = connect(
            &addresses,
            1,
            Instant::now() + Duration::from_secs(60),
            &|| Some("lost process 0".into()),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(error, MeshError::Lost("lost process 0".into()));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_stranger_with_a_bad_index_is_refused() {
        let addresses = free_addresses(2);
        let target = addresses[0].clone();
        let stranger = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(mut stream) = TcpStream::connect(&target) {
                    stream.write_all(&7u64.to_be_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    return;
                }
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let error = connect(&addresses, 0, Instant::now() + Duration::from_secs(5), &|| None, None, None).unwrap_err();
        stranger.join().unwrap();
        assert!(matches!(&error, MeshError::Failed(m) if m.contains("process 7")), "{error:?}");
    }

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text.as_bytes().to_vec()).unwrap()
    }

    /// With a secret, strangers (garbage, a bare index, another secret) are turned away and
    /// the mesh still forms between the real processes.
    #[test]
    fn with_a_secret_strangers_are_refused_and_the_peers_still_connect() {
        let addresses = free_addresses(2);
        let deadline = Instant::now() + Duration::from_secs(20);
        let first = addresses.clone();
        let zero = std::thread::spawn(move || connect(&first, 0, deadline, &|| None, Some(&secret("the cluster's own secret")), None));
        // While process 0 waits for process 1: garbage, a bare index, another secret.
        let mut sent = 0;
        while sent < 3 {
            assert!(Instant::now() < deadline, "process 0 never listened");
            let Ok(mut stream) = TcpStream::connect(&addresses[0]) else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            match sent {
                0 => stream.write_all(&[0xff; 100]).unwrap(),
                1 => stream.write_all(&1u64.to_be_bytes()).unwrap(),
                _ => {
                    let refused = auth::connect(&mut stream, &secret("not the cluster's secret"), "mesh", 1, HANDSHAKE);
                    assert!(matches!(refused, Err(AuthError::Refused)), "{refused:?}");
                }
            }
            drop(stream);
            sent += 1;
        }
        let one = connect(&addresses, 1, deadline, &|| None, Some(&secret("the cluster's own secret")), None).unwrap();
        assert_eq!(one.iter().flatten().count(), 1);
        assert_eq!(zero.join().unwrap().unwrap().iter().flatten().count(), 1);
    }

    #[test]
    fn silent_strangers_hold_up_neither_the_peers_nor_the_deadline() {
        let addresses = free_addresses(2);
        // Shorter than one stranger's handshake timeout: checked one after another, three
        // silent strangers would take 15 s.
        let deadline = Instant::now() + Duration::from_secs(3);
        let first = addresses.clone();
        let zero = std::thread::spawn(move || connect(&first, 0, deadline, &|| None, Some(&secret("the cluster's own secret")), None));
        let mut strangers = Vec::new();
        while strangers.len() < 3 {
            assert!(Instant::now() < deadline, "process 0 never listened");
            match TcpStream::connect(&addresses[0]) {
                Ok(stream) => strangers.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let one = connect(&addresses, 1, deadline, &|| None, Some(&secret("the cluster's own secret")), None).unwrap();
        assert_eq!(one.iter().flatten().count(), 1);
        assert_eq!(zero.join().unwrap().unwrap().iter().flatten().count(), 1);
        drop(strangers);
    }

    #[test]
    fn a_process_with_another_secret_fails_naming_the_peer_that_refused_it() {
        let addresses = free_addresses(2);
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = addresses.clone();
        let soon = Instant::now() + Duration::from_secs(2);
        let zero = std::thread::spawn(move || connect(&first, 0, soon, &|| None, Some(&secret("the cluster's own secret")), None));
        let error = connect(&addresses, 1, deadline, &|| None, Some(&secret("a secret of its own!!")), None).unwrap_err();
        assert!(
            matches!(&error, MeshError::Failed(m) if m.contains("process 0") && m.contains("refused") && m.contains("secret")),
            "{error:?}"
        );
        // Process 0 keeps waiting for the real process 1, then times out naming it.
        assert_eq!(zero.join().unwrap().unwrap_err(), MeshError::Timeout(vec![1]));
    }

    /// With TLS the processes connect, and what one writes the other reads.
    #[cfg(feature = "tls")]
    #[test]
    fn with_tls_three_processes_connect_and_talk() {
        let addresses = free_addresses(3);
        let deadline = Instant::now() + Duration::from_secs(20);
        let handles: Vec<_> = (0..3)
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::spawn(move || {
                    let tls = Tls::generate().unwrap();
                    connect(
                        &addresses,
                        me,
                        deadline,
                        &|| None,
                        Some(&secret("the cluster's own secret")),
                        Some(&tls),
                    )
                })
            })
            .collect();
        let mut meshes: Vec<Vec<Option<Link>>> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        for (me, mesh) in meshes.iter().enumerate() {
            for (peer, link) in mesh.iter().enumerate() {
                assert_eq!(link.as_ref().map(Link::binding).is_some_and(|b| b.is_some()), peer != me);
            }
        }
        let note = |from: usize, to: usize| format!("from {from} to {to}");
        for (from, mesh) in meshes.iter_mut().enumerate() {
            for (to, link) in mesh.iter_mut().enumerate() {
                if let Some(link) = link {
                    link.write_all(note(from, to).as_bytes()).unwrap();
                }
            }
        }
        for (to, mesh) in meshes.iter_mut().enumerate() {
            for (from, link) in mesh.iter_mut().enumerate() {
                if let Some(link) = link {
                    let mut got = vec![0u8; note(from, to).len()];
                    link.read_exact(&mut got).unwrap();
                    assert_eq!(got, note(from, to).as_bytes());
                }
            }
        }
    }

    /// A process with TLS meeting one without fails at once naming TLS.
    #[cfg(feature = "tls")]
    #[test]
    fn a_process_with_tls_cannot_join_one_without_and_says_why() {
        let addresses = free_addresses(2);
        let first = addresses.clone();
        let soon = Instant::now() + Duration::from_secs(3);
        let zero = std::thread::spawn(move || connect(&first, 0, soon, &|| None, Some(&secret("the cluster's own secret")), None));
        let tls = Tls::generate().unwrap();
        let error = connect(
            &addresses,
            1,
            Instant::now() + Duration::from_secs(20),
            &|| None,
            Some(&secret("the cluster's own secret")),
            Some(&tls),
        )
        .unwrap_err();
        assert!(
            matches!(&error, MeshError::Failed(m) if m.contains("TLS") && m.contains(crate::transport::TLS_ENV)),
            "{error:?}"
        );
        assert_eq!(zero.join().unwrap().unwrap_err(), MeshError::Timeout(vec![1]));
    }
}
