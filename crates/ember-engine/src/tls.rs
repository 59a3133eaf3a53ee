//! TLS on the connections between a cluster's processes (rustls on ring; the `tls` feature).
//!
//! There is no certificate authority to set up. Every process makes a self-signed certificate
//! for itself when the cluster starts, and a connecting process accepts whatever certificate
//! the other side shows (checking only that the other side holds its key). Who may join is
//! decided by the cluster secret, as without TLS, but its proofs are bound to the TLS session:
//! both sides mix a value exported from the session's keys ([`TlsStream::binding`], RFC 5705 /
//! RFC 8446 section 7.5) into their HMACs (see [`crate::auth`]). A machine in the middle that
//! ran a TLS session with each side would see two sessions with two different exported
//! values, so it could pass neither proof on, and TLS hides and protects every byte after the
//! handshake. TLS 1.3 only; no session resumption.
//!
//! A [`TlsStream`] shares one rustls connection between its clones, because timely reads a
//! connection on one thread and writes it on another. The socket is never read or written
//! while that connection is locked, so a writer blocked on a full socket never keeps the
//! reader from draining the other direction (two processes writing to each other at once
//! would otherwise wait for each other forever); a second lock keeps the encrypted records in
//! order on the socket.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, Connection, DigitallySignedStruct, ServerConfig, ServerConnection, SignatureScheme};

/// The name every process's certificate carries (and every connecting process asks for).
const SERVER_NAME: &str = "ember-cluster";
/// The label of the value exported from a session to bind the cluster secret's proofs to it.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-ember-cluster-auth";
/// How many bytes of the socket one read takes.
const READ_CHUNK: usize = 64 * 1024;

/// One process's TLS settings for the cluster's connections: its own certificate and key for
/// the connections it accepts, and the settings for those it makes. Cheap to clone.
#[derive(Clone)]
pub struct TlsSettings {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsSettings(..)")
    }
}

impl TlsSettings {
    /// Settings with a new self-signed certificate and key.
    ///
    /// # Errors
    ///
    /// A message when the key or the certificate cannot be made.
    pub fn generate() -> Result<Self, String> {
        // ring, which the S3 client already builds; rustls marks it deprecated only because it
        // has no post-quantum key exchange (aws-lc-rs has, at the price of a large C build).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a TLS key: {e}"))?;
        let certificate = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .and_then(|params| params.self_signed(&key))
            .map_err(|e| format!("cannot make a TLS certificate: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .map_err(|e| format!("cannot use the TLS certificate: {e}"))?;
        server.send_tls13_tickets = 0;
        let algorithms = provider.signature_verification_algorithms;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms)))
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        Ok(TlsSettings {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The accepting side's handshake on `socket`, within `timeout`.
    ///
    /// # Errors
    ///
    /// The I/O error, or the TLS error as [`io::ErrorKind::InvalidData`] (for example when the
    /// other side does not speak TLS).
    pub fn accept(&self, socket: TcpStream, timeout: Duration) -> io::Result<TlsStream> {
        let connection = ServerConnection::new(self.server.clone()).map_err(io::Error::other)?;
        handshake(socket, connection.into(), timeout)
    }

    /// The connecting side's handshake on `socket`, within `timeout`.
    ///
    /// # Errors
    ///
    /// As [`TlsSettings::accept`].
    pub fn connect(&self, socket: TcpStream, timeout: Duration) -> io::Result<TlsStream> {
        let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
        let connection = ClientConnection::new(self.client.clone(), name).map_err(io::Error::other)?;
        handshake(socket, connection.into(), timeout)
    }
}

fn handshake(mut socket: TcpStream, mut connection: Connection, timeout: Duration) -> io::Result<TlsStream> {
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket)?;
    }
    while connection.wants_write() {
        connection.write_tls(&mut socket)?;
    }
    let binding = connection
        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(io::Error::other)?;
    Ok(TlsStream {
        shared: Arc::new(Shared {
            socket,
            session: Mutex::new(Session {
                connection,
                pending: Vec::new(),
                ended: false,
            }),
            outgoing: Mutex::new(Outgoing {
                records: Vec::new(),
                broken: false,
            }),
            binding,
        }),
        chunk: Vec::new(),
    })
}

/// Accepts any certificate, as long as the other side proves it holds the certificate's key:
/// who is who is proven by the cluster secret, bound to the session (see the module's docs).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// What the clones of one [`TlsStream`] share.
struct Shared {
    socket: TcpStream,
    session: Mutex<Session>,
    /// Held from encrypting a write until its records are on the socket, so that records reach
    /// the socket in the order they were made.
    outgoing: Mutex<Outgoing>,
    binding: [u8; 32],
}

struct Session {
    connection: Connection,
    /// Bytes read from the socket that the connection could not take yet (its buffer of
    /// decrypted bytes was full).
    pending: Vec<u8>,
    /// The socket has ended.
    ended: bool,
}

struct Outgoing {
    /// Encrypted records on their way to the socket (kept to reuse its allocation).
    records: Vec<u8>,
    /// A write to the socket failed part way: the stream of records is cut.
    broken: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves the state as consistent as an I/O error would.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Session {
    /// Moves decrypted bytes into `out`, decrypting what was read from the socket as needed:
    /// `Some(n)` for `n` bytes (0 at the end of the stream), `None` when the socket must be
    /// read first.
    fn decrypt_into(&mut self, out: &mut [u8], mut fresh: &[u8]) -> io::Result<Option<usize>> {
        let mut filled = 0;
        loop {
            match self.connection.reader().read(&mut out[filled..]) {
                // The other side closed the session (`close_notify`).
                Ok(0) => return Ok(Some(filled)),
                Ok(n) => {
                    filled += n;
                    if filled == out.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without `close_notify`: an end of stream, as on plain TCP
                // (timely and the control plane treat an unexpected end as a lost peer).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(filled)),
                Err(e) => return Err(e),
            }
            // Bytes left over from an earlier read come before this read's.
            let from_pending = !self.pending.is_empty();
            let mut source: &[u8] = if from_pending { &self.pending } else { fresh };
            if source.is_empty() {
                if self.ended && filled == 0 {
                    // Let the connection see the end, to tell a clean close from a cut.
                    self.connection.read_tls(&mut &[][..])?;
                    self.connection.process_new_packets().map_err(tls_error)?;
                    return match self.connection.reader().read(out) {
                        Ok(n) => Ok(Some(n)),
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::WouldBlock => Ok(Some(0)),
                        Err(e) => Err(e),
                    };
                }
                break;
            }
            let before = source.len();
            let taken = self.connection.read_tls(&mut source)?;
            let consumed = before - source.len();
            if from_pending {
                self.pending.drain(..consumed);
            } else {
                fresh = &fresh[consumed..];
            }
            self.connection.process_new_packets().map_err(tls_error)?;
            if taken == 0 {
                // After `close_notify` nothing more is read: what follows is dropped.
                self.pending.clear();
                fresh = &[];
            }
        }
        // Whatever of this read the connection could not take waits for the next one.
        self.pending.extend_from_slice(fresh);
        Ok((filled > 0).then_some(filled))
    }
}

/// A TLS connection between two processes of a cluster. Its clones share the session: one
/// may read while another writes (more than one reader at a time would interleave).
pub struct TlsStream {
    shared: Arc<Shared>,
    /// This handle's buffer for reading the socket.
    chunk: Vec<u8>,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.shared.socket)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// A value both ends derive from the session's keys, and nobody else can: what the cluster
    /// secret's proofs are bound to.
    pub fn binding(&self) -> [u8; 32] {
        self.shared.binding
    }

    /// A new handle to the same session (see [`TlsStream`]).
    ///
    /// # Errors
    ///
    /// None today; the signature matches [`TcpStream::try_clone`].
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(TlsStream {
            shared: self.shared.clone(),
            chunk: Vec::new(),
        })
    }

    /// The underlying socket, for its timeouts and options.
    pub fn socket(&self) -> &TcpStream {
        &self.shared.socket
    }

    /// Shuts the connection down. Closing the writing half first ends the session cleanly
    /// (`close_notify`), unless a write is under way; closing both only cuts the socket, so it
    /// never waits for the other side.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how == Shutdown::Write
            && let Ok(mut outgoing) = self.shared.outgoing.try_lock()
            && !outgoing.broken
        {
            let mut session = lock(&self.shared.session);
            session.connection.send_close_notify();
            while session.connection.wants_write() {
                session.connection.write_tls(&mut outgoing.records)?;
            }
            drop(session);
            let written = (&self.shared.socket).write_all(&outgoing.records);
            outgoing.records.clear();
            written?;
        }
        self.shared.socket.shutdown(how)
    }
}

impl Read for TlsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.chunk.len() != READ_CHUNK {
            self.chunk.resize(READ_CHUNK, 0);
        }
        let mut fresh = 0;
        loop {
            let mut session = lock(&self.shared.session);
            if let Some(n) = session.decrypt_into(out, &self.chunk[..fresh])? {
                return Ok(n);
            }
            if session.ended {
                return Ok(0);
            }
            drop(session);
            // Outside the lock: a writer may encrypt meanwhile.
            fresh = (&self.shared.socket).read(&mut self.chunk)?;
            if fresh == 0 {
                lock(&self.shared.session).ended = true;
            }
        }
    }
}

impl Write for &TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut outgoing = lock(&self.shared.outgoing);
        if outgoing.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write on this TLS connection failed part way",
            ));
        }
        let taken = {
            let mut session = lock(&self.shared.session);
            let taken = session.connection.writer().write(data)?;
            while session.connection.wants_write() {
                session.connection.write_tls(&mut outgoing.records)?;
            }
            taken
        };
        let written = (&self.shared.socket).write_all(&outgoing.records);
        outgoing.records.clear();
        if written.is_err() {
            outgoing.broken = true;
        }
        written.map(|()| taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Every write goes to the socket before it returns.
        Ok(())
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        (&*self).write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Two ends of one TLS session over loopback, each with its own settings.
    fn pair() -> (TlsStream, TlsStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            TlsSettings::generate().unwrap().accept(socket, TIMEOUT).unwrap()
        });
        let client = TlsSettings::generate()
            .unwrap()
            .connect(TcpStream::connect(address).unwrap(), TIMEOUT)
            .unwrap();
        (client, server.join().unwrap())
    }

    /// The byte at `i` of what side `side` sends.
    fn pattern(side: u8, i: usize) -> u8 {
        (i.wrapping_mul(31) as u8) ^ (i >> 13) as u8 ^ side
    }

    /// Writes `len` bytes of `side`'s pattern in uneven pieces, then ends the session.
    fn send(stream: TlsStream, side: u8, len: usize) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            let data: Vec<u8> = (0..len).map(|i| pattern(side, i)).collect();
            let mut at = 0;
            let mut piece = 1;
            while at < len {
                let end = (at + piece).min(len);
                (&stream).write_all(&data[at..end]).unwrap();
                at = end;
                piece = piece * 7 % 100_003 + 1;
            }
            stream.shutdown(Shutdown::Write).unwrap();
        })
    }

    /// Reads to the clean end of the session and checks every byte of `side`'s pattern.
    fn receive(mut stream: TlsStream, side: u8, len: usize) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 20];
            let mut at = 0;
            loop {
                let n = stream.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                for (offset, byte) in buffer[..n].iter().enumerate() {
                    assert_eq!(*byte, pattern(side, at + offset), "byte {} from side {side}", at + offset);
                }
                at += n;
            }
            assert_eq!(at, len, "side {side} sent {len} bytes");
        })
    }

    /// Both ends write 48 MB to each other at once, each through one handle while another
    /// handle of the same session reads: far more than the sockets buffer, so a writer that
    /// held the session while blocked on its socket would stop both sides for good.
    #[test]
    fn both_directions_at_once_arrive_whole_and_end_cleanly() {
        let (client, server) = pair();
        let len = 48 << 20;
        let handles = [
            send(client.try_clone().unwrap(), 1, len),
            send(server.try_clone().unwrap(), 2, len),
            receive(client, 2, len),
            receive(server, 1, len),
        ];
        for handle in handles {
            handle.join().unwrap();
        }
    }

    #[test]
    fn both_ends_export_the_same_value_and_every_session_its_own() {
        let (a, b) = pair();
        let (c, d) = pair();
        assert_eq!(a.binding(), b.binding());
        assert_eq!(c.binding(), d.binding());
        assert_ne!(a.binding(), c.binding());
    }

    #[test]
    fn a_peer_that_does_not_speak_tls_fails_the_handshake_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // A plain server that speaks first, as ember's authentication does without TLS.
        let plain_server = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.write_all(b"EMBERAUTH\x01 and a challenge of 32 bytes......").unwrap();
            thread::sleep(Duration::from_millis(500));
        });
        let started = std::time::Instant::now();
        let error = TlsSettings::generate()
            .unwrap()
            .connect(TcpStream::connect(address).unwrap(), TIMEOUT)
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(started.elapsed() < TIMEOUT);
        plain_server.join().unwrap();

        // A client that sends garbage to a TLS server.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stranger = thread::spawn(move || {
            let mut socket = TcpStream::connect(address).unwrap();
            socket.write_all(&[0xff; 200]).unwrap();
            thread::sleep(Duration::from_millis(500));
        });
        let (socket, _) = listener.accept().unwrap();
        let error = TlsSettings::generate().unwrap().accept(socket, TIMEOUT).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        stranger.join().unwrap();
    }

    /// A socket cut without `close_notify` reads as the end of the stream, after everything
    /// that arrived before it.
    #[test]
    fn a_cut_connection_reads_as_its_end_after_what_came_before() {
        let (client, mut server) = pair();
        (&client).write_all(b"last words").unwrap();
        client.socket().shutdown(Shutdown::Both).unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
    }
}
