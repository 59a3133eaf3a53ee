//! Mutual authentication of a cluster's connections over a shared secret.
//!
//! Every connection between the processes of a cluster (the control plane's and timely's data
//! connections) starts with this handshake when the cluster has a secret, so that a process
//! that does not know it can neither join, nor pose as a peer, nor send a `stop`:
//!
//! 1. the accepting side sends `EMBERAUTH` and version 1 (10 bytes), then a fresh random
//!    32-byte challenge `a`;
//! 2. the connecting side answers with its own random challenge `c` (32 bytes), the process
//!    index it claims (8 bytes, big-endian) and
//!    `HMAC-SHA256(secret, "ember/1/" + channel + "/client" + a + c + index)`;
//! 3. the accepting side checks that proof (in constant time) and, if it holds, answers with
//!    `HMAC-SHA256(secret, "ember/1/" + channel + "/server" + a + c + index)`, which the
//!    connecting side checks in turn.
//!
//! Over TLS both proofs also cover a value exported from the TLS session's keys (see
//! [`crate::tls`]), so a proof made inside one session cannot be passed on into another.
//!
//! The challenges make every proof single-use (a recorded handshake cannot be replayed), the
//! channel name keeps a proof for one kind of connection from opening the other, and the
//! secret itself never crosses the wire. A connection that fails is closed; the accepting
//! side logs the remote address and goes on.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 9] = b"EMBERAUTH";
const VERSION: u8 = 1;
const CHALLENGE: usize = 32;
const TAG: usize = 32;

/// The environment variable holding a cluster's secret (at least 16 bytes of text).
pub const SECRET_ENV: &str = "EMBER_CLUSTER_SECRET";
/// The environment variable naming a file that holds a cluster's secret (its content, with
/// surrounding whitespace removed).
pub const SECRET_FILE_ENV: &str = "EMBER_CLUSTER_SECRET_FILE";

/// A cluster's shared secret. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Arc<[u8]>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A secret of `bytes`.
    ///
    /// # Errors
    ///
    /// A message when it is shorter than [`ClusterSecret::MIN_LEN`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes: Vec<u8> = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "the cluster secret has {} bytes; it needs at least {}",
                bytes.len(),
                Self::MIN_LEN
            ));
        }
        Ok(ClusterSecret(bytes.into()))
    }

    /// A new random secret: 32 random bytes as 64 hex digits (what a supervisor hands the
    /// processes it starts).
    ///
    /// # Errors
    ///
    /// A message when the system has no randomness to give.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("cannot generate a cluster secret: {e}"))?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::new(text)
    }

    /// The secret's text, to pass on to the processes of a cluster (never log it).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret from [`SECRET_ENV`], or else from the file [`SECRET_FILE_ENV`] names;
    /// `None` when neither is set.
    ///
    /// # Errors
    ///
    /// A message naming the variable when the file cannot be read or the secret is too short.
    pub fn from_env() -> Result<Option<Self>, String> {
        if let Some(text) = std::env::var_os(SECRET_ENV) {
            return Self::new(text.into_encoded_bytes())
                .map(Some)
                .map_err(|e| format!("{SECRET_ENV}: {e}"));
        }
        let Some(path) = std::env::var_os(SECRET_FILE_ENV) else {
            return Ok(None);
        };
        let text = std::fs::read(&path).map_err(|e| format!("{SECRET_FILE_ENV}: cannot read {}: {e}", path.to_string_lossy()))?;
        Self::new(text.trim_ascii().to_vec())
            .map(Some)
            .map_err(|e| format!("{SECRET_FILE_ENV} ({}): {e}", path.to_string_lossy()))
    }

    fn tag(&self, channel: &str, side: &str, a: &[u8], c: &[u8], index: u64, binding: Option<[u8; 32]>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"ember/1/");
        mac.update(channel.as_bytes());
        mac.update(b"/");
        mac.update(side.as_bytes());
        mac.update(a);
        mac.update(c);
        mac.update(&index.to_be_bytes());
        if let Some(binding) = binding {
            mac.update(b"/tls");
            mac.update(&binding);
        }
        mac
    }
}

/// A connection the handshake runs on.
pub trait Handshake: Read + Write {
    /// Sets the read and write timeouts.
    ///
    /// # Errors
    ///
    /// The socket's error.
    fn set_timeouts(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// The value of the secure channel underneath that the proofs are bound to (see
    /// [`crate::tls`]); `None` for a plain connection.
    fn binding(&self) -> Option<[u8; 32]> {
        None
    }
}

impl Handshake for TcpStream {
    fn set_timeouts(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum AuthError {
    /// The connection broke, timed out or spoke another protocol (the I/O error).
    Io(io::Error),
    /// The other side does not know the secret (its proof was wrong).
    WrongProof,
    /// The accepting side closed the connection after this side's proof: it refused it.
    Refused,
    /// The TLS handshake before it failed (the I/O or TLS error).
    Tls(io::Error),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Io(e) => write!(f, "the authentication handshake failed: {e}"),
            AuthError::WrongProof => f.write_str("its proof of the cluster secret is wrong (a different secret, or none)"),
            AuthError::Tls(e) => write!(f, "the TLS handshake failed: {e}"),
            AuthError::Refused => {
                f.write_str("it refused this process's proof of the cluster secret (the processes were given different secrets)")
            }
        }
    }
}

fn random_challenge() -> io::Result<[u8; CHALLENGE]> {
    let mut challenge = [0u8; CHALLENGE];
    getrandom::fill(&mut challenge).map_err(|e| io::Error::other(format!("no randomness for a challenge: {e}")))?;
    Ok(challenge)
}

/// The accepting side of the handshake on `channel` (within `timeout`): the index the
/// connecting process proved it knows the secret with.
///
/// # Errors
///
/// [`AuthError::WrongProof`] for a peer without the secret, [`AuthError::Io`] for one that
/// broke off or sent something else.
pub fn accept(stream: &mut impl Handshake, secret: &ClusterSecret, channel: &str, timeout: Duration) -> Result<u64, AuthError> {
    stream.set_timeouts(Some(timeout)).map_err(AuthError::Io)?;
    let binding = stream.binding();
    let a = random_challenge().map_err(AuthError::Io)?;
    let mut hello = Vec::with_capacity(MAGIC.len() + 1 + CHALLENGE);
    hello.extend_from_slice(MAGIC);
    hello.push(VERSION);
    hello.extend_from_slice(&a);
    stream.write_all(&hello).map_err(AuthError::Io)?;
    let mut answer = [0u8; CHALLENGE + 8 + TAG];
    stream.read_exact(&mut answer).map_err(AuthError::Io)?;
    let (c, rest) = answer.split_at(CHALLENGE);
    let (index, proof) = rest.split_at(8);
    let index = u64::from_be_bytes(index.try_into().expect("8 bytes"));
    secret
        .tag(channel, "client", &a, c, index, binding)
        .verify_slice(proof)
        .map_err(|_| AuthError::WrongProof)?;
    let reply = secret.tag(channel, "server", &a, c, index, binding).finalize().into_bytes();
    stream.write_all(&reply).map_err(AuthError::Io)?;
    Ok(index)
}

/// The connecting side of the handshake on `channel` (within `timeout`), as process `index`.
///
/// # Errors
///
/// [`AuthError::Refused`] when the accepting side turned this side's proof down,
/// [`AuthError::WrongProof`] when its own proof is wrong, [`AuthError::Io`] otherwise.
pub fn connect(stream: &mut impl Handshake, secret: &ClusterSecret, channel: &str, index: u64, timeout: Duration) -> Result<(), AuthError> {
    stream.set_timeouts(Some(timeout)).map_err(AuthError::Io)?;
    let binding = stream.binding();
    let mut hello = [0u8; MAGIC.len() + 1 + CHALLENGE];
    stream.read_exact(&mut hello).map_err(AuthError::Io)?;
    if &hello[..MAGIC.len()] != MAGIC || hello[MAGIC.len()] != VERSION {
        return Err(AuthError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer does not speak ember's authentication handshake (version 1)",
        )));
    }
    let a = &hello[MAGIC.len() + 1..];
    let c = random_challenge().map_err(AuthError::Io)?;
    let mut answer = Vec::with_capacity(CHALLENGE + 8 + TAG);
    answer.extend_from_slice(&c);
    answer.extend_from_slice(&index.to_be_bytes());
    answer.extend_from_slice(&secret.tag(channel, "client", a, &c, index, binding).finalize().into_bytes());
    stream.write_all(&answer).map_err(AuthError::Io)?;
    let mut reply = [0u8; TAG];
    match stream.read_exact(&mut reply) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => return Err(AuthError::Refused),
        Err(e) => return Err(AuthError::Io(e)),
    }
    secret
        .tag(channel, "server", a, &c, index, binding)
        .verify_slice(&reply)
        .map_err(|_| AuthError::WrongProof)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text.as_bytes().to_vec()).unwrap()
    }

    /// Runs a handshake between an acceptor with `theirs` and a connector with `ours`.
    fn handshake(
        theirs: ClusterSecret,
        ours: ClusterSecret,
        channel: (&'static str, &'static str),
    ) -> (Result<u64, AuthError>, Result<(), AuthError>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let result = accept(&mut stream, &theirs, channel.0, TIMEOUT);
            drop(stream);
            result
        });
        let mut stream = TcpStream::connect(address).unwrap();
        let connected = connect(&mut stream, &ours, channel.1, 3, TIMEOUT);
        (acceptor.join().unwrap(), connected)
    }

    #[test]
    fn the_same_secret_admits_and_names_the_index() {
        let (accepted, connected) = handshake(secret("a shared secret!"), secret("a shared secret!"), ("mesh", "mesh"));
        assert_eq!(accepted.unwrap(), 3);
        connected.unwrap();
    }

    /// A connection whose secure channel exports `binding` (TLS's, in real use).
    struct Bound(TcpStream, [u8; 32]);

    impl Read for Bound {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.0.read(out)
        }
    }

    impl Write for Bound {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.write(data)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl Handshake for Bound {
        fn set_timeouts(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            self.0.set_timeouts(timeout)
        }

        fn binding(&self) -> Option<[u8; 32]> {
            Some(self.1)
        }
    }

    /// Proofs made inside one secure channel do not hold in another: a machine in the middle
    /// with a channel to each side cannot relay them, even with the same secret on both ends.
    #[test]
    fn proofs_bound_to_one_channel_fail_in_another() {
        let handshake = |server: [u8; 32], client: [u8; 32]| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let acceptor = std::thread::spawn(move || {
                let mut stream = Bound(listener.accept().unwrap().0, server);
                accept(&mut stream, &secret("a shared secret!"), "mesh", TIMEOUT)
            });
            let mut stream = Bound(TcpStream::connect(address).unwrap(), client);
            let connected = connect(&mut stream, &secret("a shared secret!"), "mesh", 3, TIMEOUT);
            drop(stream);
            (acceptor.join().unwrap(), connected)
        };
        let (accepted, connected) = handshake([7; 32], [7; 32]);
        assert_eq!(accepted.unwrap(), 3);
        connected.unwrap();
        let (accepted, _) = handshake([7; 32], [8; 32]);
        assert!(matches!(accepted, Err(AuthError::WrongProof)), "{accepted:?}");
    }

    #[test]
    fn another_secret_is_refused_on_both_sides() {
        let (accepted, connected) = handshake(secret("a shared secret!"), secret("another secret!!"), ("mesh", "mesh"));
        assert!(matches!(accepted, Err(AuthError::WrongProof)), "{accepted:?}");
        assert!(matches!(connected, Err(AuthError::Refused)), "{connected:?}");
    }

    #[test]
    fn a_proof_for_one_channel_does_not_open_another() {
        let (accepted, _) = handshake(secret("a shared secret!"), secret("a shared secret!"), ("control", "mesh"));
        assert!(matches!(accepted, Err(AuthError::WrongProof)), "{accepted:?}");
    }

    #[test]
    fn garbage_and_silence_are_refused_without_hanging() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stranger = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(b"{\"type\":\"stop\",\"graceful\":false}\n").unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let (mut stream, _) = listener.accept().unwrap();
        let result = accept(&mut stream, &secret("a shared secret!"), "control", Duration::from_millis(200));
        assert!(result.is_err(), "{result:?}");
        stranger.join().unwrap();
    }

    #[test]
    fn secrets_are_long_enough_and_never_printed() {
        assert!(ClusterSecret::new(b"short".to_vec()).is_err());
        let generated = ClusterSecret::generate().unwrap();
        assert_eq!(generated.expose().len(), 64);
        assert_ne!(generated, ClusterSecret::generate().unwrap());
        assert_eq!(format!("{generated:?}"), "ClusterSecret(..)");
    }
}
