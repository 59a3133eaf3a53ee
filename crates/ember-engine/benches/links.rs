//! What TLS costs on a connection between two processes: bytes per second through one
//! loopback connection, plain TCP against TLS ([`ember_engine::tls`]), written in 64 KiB
//! pieces as timely's send threads write and read into a 1 MiB buffer as its receive threads
//! read; one direction, then both at once, with the CPU time both ends spent per byte (this
//! process's, from `/proc/self/stat`). Run with
//! `cargo bench -p ember-engine --features tls --bench links [MIB]` (default 4096 MiB a run).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ember_engine::tls::{TlsSettings, TlsStream};

const PIECE: usize = 64 * 1024;

/// One end of a connection, whichever kind.
trait End: Read + Send + 'static {
    fn write_piece(&self, piece: &[u8]);
    fn end_writing(&self);
    fn second(&self) -> Self;
}

/// Both kinds write through a shared reference, end with `shutdown` and clone a handle.
macro_rules! end {
    ($kind:ty) => {
        impl End for $kind {
            fn write_piece(&self, piece: &[u8]) {
                let mut writer = self;
                writer.write_all(piece).unwrap();
            }
            fn end_writing(&self) {
                self.shutdown(Shutdown::Write).unwrap();
            }
            fn second(&self) -> Self {
                self.try_clone().unwrap()
            }
        }
    };
}

end!(TcpStream);
end!(TlsStream);

fn plain_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn tls_pair() -> (TlsStream, TlsStream) {
    let (client, server) = plain_pair();
    let accepting = thread::spawn(move || TlsSettings::generate().unwrap().accept(server, Duration::from_secs(10)).unwrap());
    let client = TlsSettings::generate().unwrap().connect(client, Duration::from_secs(10)).unwrap();
    (client, accepting.join().unwrap())
}

fn send<E: End>(end: E, bytes: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let piece = vec![0x5au8; PIECE];
        let mut sent = 0;
        while sent < bytes {
            end.write_piece(&piece);
            sent += PIECE;
        }
        end.end_writing();
    })
}

fn receive<E: End>(mut end: E) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match end.read(&mut buffer).unwrap() {
                0 => return got,
                n => got += n,
            }
        }
    })
}

/// This process's CPU time so far (user and system), from `/proc/self/stat`, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Bytes per second over the pair (`a` to `b`, and `b` to `a` as well when `both`), and the
/// CPU time (both ends, user and system) per byte in nanoseconds.
fn measure<E: End>((a, b): (E, E), bytes: usize, both: bool) -> (f64, f64) {
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut receivers = vec![receive(b.second())];
    let mut senders = vec![send(a.second(), bytes)];
    if both {
        receivers.push(receive(a));
        senders.push(send(b, bytes));
    }
    for sender in senders {
        sender.join().unwrap();
    }
    let got: usize = receivers.into_iter().map(|r| r.join().unwrap()).sum();
    let elapsed = started.elapsed().as_secs_f64();
    (got as f64 / elapsed, (cpu_seconds() - cpu) * 1e9 / got as f64)
}

fn main() {
    let mib: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(4096);
    let bytes = mib << 20;
    // What a connection costs to set up: a process's certificate, then each handshake.
    let started = Instant::now();
    let (server, client) = (TlsSettings::generate().unwrap(), TlsSettings::generate().unwrap());
    let generated = started.elapsed() / 2;
    let started = Instant::now();
    for _ in 0..50 {
        let (a, b) = plain_pair();
        let server = server.clone();
        let accepting = thread::spawn(move || server.accept(b, Duration::from_secs(10)).unwrap());
        client.connect(a, Duration::from_secs(10)).unwrap();
        accepting.join().unwrap();
    }
    println!(
        "certificate and key: {:.2} ms a process; TLS handshake: {:.2} ms a connection (50 over loopback)\n",
        generated.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3 / 50.0
    );
    println!("| connection | one direction | both directions at once (sum) |");
    println!("| --- | --- | --- |");
    for round in 0..2 {
        let plain = (measure(plain_pair(), bytes, false), measure(plain_pair(), bytes, true));
        let tls = (measure(tls_pair(), bytes, false), measure(tls_pair(), bytes, true));
        let show = |(rate, cpu): (f64, f64)| format!("{:.0} MB/s, {cpu:.2} ns CPU a byte", rate / 1e6);
        println!("| plain TCP (round {round}) | {} | {} |", show(plain.0), show(plain.1));
        println!("| TLS 1.3 (round {round}) | {} | {} |", show(tls.0), show(tls.1));
    }
}
