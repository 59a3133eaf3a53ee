//! What the socket examples share: a stand-in for the seeds' `nc -lk 9999`.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

/// Serves `groups` of lines to the first client that connects on a free local port, one group
/// per `every`, then keeps the connection open for `linger`. Returns the port.
pub fn serve_lines(groups: Vec<Vec<String>>, every: Duration, linger: Duration) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else { return };
        for group in groups {
            if group.is_empty() {
                std::thread::sleep(every);
                continue;
            }
            let mut text = group.join("\n");
            text.push('\n');
            if client.write_all(text.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
        std::thread::sleep(linger);
    });
    Ok(port)
}

/// `host port` from the command line, or `None` to use the built-in server.
pub fn server_from_args() -> Option<(String, u16)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [host, port] => Some((host.clone(), port.parse().ok()?)),
        _ => None,
    }
}

/// Runs the started context: for `run_for` and then a graceful stop (self-fed runs), or until
/// it terminates (Ctrl-C) when reading from the user's server.
pub fn run(ssc: &ember::StreamingContext, run_for: Option<ember::Duration>) -> ember::Result<()> {
    ssc.start()?;
    match run_for {
        Some(d) => {
            ssc.await_termination_or_timeout(d)?;
            ssc.stop(true)
        }
        None => ssc.await_termination(),
    }
}
