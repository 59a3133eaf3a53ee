//! The connections between a cluster's processes, plain TCP or TLS over it: what the control
//! plane and timely's data exchange read and write, whichever it is.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::auth::{self, AuthError, ClusterSecret};

/// The environment variable that turns TLS on for a cluster's connections (`1`, `true`, `on`,
/// `yes`; `0`, `false`, `off`, `no` or unset leave it off). Every process of a cluster must
/// agree on it, and TLS needs a cluster secret.
pub const TLS_ENV: &str = "EMBER_CLUSTER_TLS";

/// Whether [`TLS_ENV`] asks for TLS.
///
/// # Errors
///
/// A message naming the variable when its value is neither yes nor no.
pub fn tls_from_env() -> Result<bool, String> {
    let Some(value) = std::env::var_os(TLS_ENV) else { return Ok(false) };
    match value.to_string_lossy().trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "" | "0" | "false" | "off" | "no" => Ok(false),
        other => Err(format!("{TLS_ENV} is {other:?}; use 1 (TLS on) or 0 (off)")),
    }
}

/// One process's TLS settings, or why this build has none.
#[derive(Clone, Debug)]
pub struct Tls {
    #[cfg(feature = "tls")]
    settings: crate::tls::TlsSettings,
}

impl Tls {
    /// Settings with a certificate of this process's own, made now.
    ///
    /// # Errors
    ///
    /// A message when this program was built without the `tls` feature, or when the
    /// certificate cannot be made.
    pub fn generate() -> Result<Self, String> {
        #[cfg(feature = "tls")]
        {
            Ok(Tls {
                settings: crate::tls::TlsSettings::generate()?,
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            Err(format!(
                "{TLS_ENV} asks for TLS, but this program was built without it (the `tls` feature of the `ember` crate)"
            ))
        }
    }

    /// The accepting side's TLS handshake on `socket`.
    pub(crate) fn accept(&self, socket: TcpStream, timeout: Duration) -> io::Result<Link> {
        #[cfg(feature = "tls")]
        {
            self.settings.accept(socket, timeout).map(Link::Tls)
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (socket, timeout);
            Err(io::Error::other("this program was built without TLS"))
        }
    }

    /// The connecting side's TLS handshake on `socket`.
    pub(crate) fn connect(&self, socket: TcpStream, timeout: Duration) -> io::Result<Link> {
        #[cfg(feature = "tls")]
        {
            self.settings.connect(socket, timeout).map(Link::Tls)
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (socket, timeout);
            Err(io::Error::other("this program was built without TLS"))
        }
    }
}

/// A connection to another process of the cluster.
#[derive(Debug)]
pub enum Link {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsStream),
}

impl From<TcpStream> for Link {
    fn from(stream: TcpStream) -> Self {
        Link::Plain(stream)
    }
}

impl Link {
    /// The TCP socket underneath.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Link::Plain(stream) => stream,
            #[cfg(feature = "tls")]
            Link::Tls(stream) => stream.socket(),
        }
    }

    /// A second handle to the same connection (one may read while another writes).
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn try_clone(&self) -> io::Result<Self> {
        match self {
            Link::Plain(stream) => stream.try_clone().map(Link::Plain),
            #[cfg(feature = "tls")]
            Link::Tls(stream) => stream.try_clone().map(Link::Tls),
        }
    }

    /// Shuts the connection down (see [`TcpStream::shutdown`]).
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Link::Plain(stream) => stream.shutdown(how),
            #[cfg(feature = "tls")]
            Link::Tls(stream) => stream.shutdown(how),
        }
    }

    /// The value the cluster secret's proofs are bound to: one exported from the TLS session,
    /// `None` on plain TCP.
    pub fn binding(&self) -> Option<[u8; 32]> {
        match self {
            Link::Plain(_) => None,
            #[cfg(feature = "tls")]
            Link::Tls(stream) => Some(stream.binding()),
        }
    }
}

impl Read for Link {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(stream) => stream.read(out),
            #[cfg(feature = "tls")]
            Link::Tls(stream) => stream.read(out),
        }
    }
}

impl Write for &Link {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(stream) => (&*stream).write(data),
            #[cfg(feature = "tls")]
            Link::Tls(stream) => (&*stream).write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(stream) => (&*stream).flush(),
            #[cfg(feature = "tls")]
            Link::Tls(_) => Ok(()),
        }
    }
}

impl Write for Link {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        (&*self).write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

impl crate::auth::Handshake for Link {
    fn set_timeouts(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket().set_read_timeout(timeout)?;
        self.socket().set_write_timeout(timeout)
    }

    fn binding(&self) -> Option<[u8; 32]> {
        Link::binding(self)
    }
}

/// Timely's data exchange runs over these connections.
impl timely::communication::allocator::zero_copy::stream::Stream for Link {
    fn try_clone(&self) -> io::Result<Self> {
        Link::try_clone(self)
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket().set_nonblocking(nonblocking)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        Link::shutdown(self, how)
    }
}

/// What went wrong in a handshake, for a process that could not connect: with a TLS failure,
/// the likeliest reason too.
pub(crate) fn explain(error: &AuthError) -> String {
    match error {
        AuthError::Tls(_) => format!("{error} (every process of a cluster must agree on {TLS_ENV})"),
        _ => error.to_string(),
    }
}

/// The accepting side of a connection between processes: the TLS handshake when `tls` is set,
/// then the proof of `secret` on `channel` (see [`crate::auth`]). Returns the connection and
/// the process index its other side proved.
///
/// # Errors
///
/// [`AuthError::Tls`] when the TLS handshake fails, else as [`auth::accept`].
pub(crate) fn accept(
    stream: TcpStream,
    secret: &ClusterSecret,
    tls: Option<&Tls>,
    channel: &str,
    timeout: Duration,
) -> Result<(Link, u64), AuthError> {
    stream.set_nonblocking(false).map_err(AuthError::Io)?;
    let mut link = match tls {
        Some(tls) => tls.accept(stream, timeout).map_err(AuthError::Tls)?,
        None => Link::Plain(stream),
    };
    let index = auth::accept(&mut link, secret, channel, timeout)?;
    Ok((link, index))
}

/// The connecting side of a connection between processes, as process `index`: the TLS
/// handshake when `tls` is set, then the proof of `secret` on `channel`.
///
/// # Errors
///
/// [`AuthError::Tls`] when the TLS handshake fails, else as [`auth::connect`].
pub(crate) fn connect(
    stream: TcpStream,
    secret: &ClusterSecret,
    tls: Option<&Tls>,
    channel: &str,
    index: u64,
    timeout: Duration,
) -> Result<Link, AuthError> {
    let mut link = match tls {
        Some(tls) => tls.connect(stream, timeout).map_err(AuthError::Tls)?,
        None => Link::Plain(stream),
    };
    auth::connect(&mut link, secret, channel, index, timeout)?;
    Ok(link)
}
