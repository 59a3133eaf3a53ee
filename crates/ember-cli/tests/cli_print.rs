//! `print` output of the `ember` binary, byte for byte against a golden file, and the main
//! job end to end over a real socket. Set `EMBER_BLESS=1` to rewrite the golden file after a
//! deliberate change.

use std::process::Command;

#[test]
fn queue_wordcount_prints_sparks_format_byte_for_byte() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember")).arg("queue-wordcount").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/queue_wordcount.txt");
    if std::env::var_os("EMBER_BLESS").is_some() {
        std::fs::write(golden, &out.stdout).unwrap();
    }
    let expected = std::fs::read(golden).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&expected));
}

#[test]
fn wordcount_job_runs_end_to_end_over_a_socket() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["wordcount", "--batches", "3", "--interval-ms", "200", "--lines-per-sec", "500"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let headers = text.lines().filter(|l| l.starts_with("Time: ") && l.ends_with(" ms")).count();
    assert!(headers >= 3, "expected at least 3 batches:\n{text}");
    // Every element line is a `(word,count)` pair of the generator's vocabulary.
    let pairs: Vec<&str> = text.lines().filter(|l| l.starts_with('(')).collect();
    assert!(!pairs.is_empty(), "no counts printed:\n{text}");
    for p in pairs {
        let (word, count) = p.trim_matches(|c| c == '(' || c == ')').split_once(',').unwrap();
        assert!(word.chars().all(|c| c.is_ascii_lowercase()), "{p}");
        assert!(count.parse::<u64>().unwrap() > 0, "{p}");
    }
}

/// Runs `ember` with `args`: exit code, stdout, stderr.
fn ember(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember")).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version_print_and_exit_0() {
    for args in [
        &["--help"][..],
        &["help"],
        &["gen", "--help"],
        &["gen", "socket", "--help"],
        &["gen", "files", "--help"],
        &["wordcount", "--help"],
    ] {
        let (code, stdout, stderr) = ember(args);
        assert_eq!(code, Some(0), "ember {args:?}: {stderr}");
        assert!(stdout.contains("Usage: ember"), "ember {args:?} printed no usage:\n{stdout}");
    }
    let (code, stdout, _) = ember(&["wordcount", "--help"]);
    assert_eq!(code, Some(0));
    for flag in ["--batches", "--interval-ms", "--workers", "--host", "--port"] {
        assert!(stdout.contains(flag), "wordcount --help lacks {flag}:\n{stdout}");
    }
    let (code, stdout, _) = ember(&["--version"]);
    assert_eq!((code, stdout.trim()), (Some(0), concat!("ember ", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn a_bad_flag_or_value_exits_2_with_one_line_naming_it() {
    for (args, named) in [
        (&["nope"][..], "nope"),
        (&["wordcount", "--nope"], "--nope"),
        (&["wordcount", "--workers", "0"], "--workers"),
        (&["wordcount", "--batches", "many"], "--batches"),
        (&["gen", "socket", "--rate", "nan"], "--rate"),
        (&["gen", "socket", "--seconds", "-1"], "--seconds"),
        (&["gen", "files"], "--dir"),
    ] {
        let (code, stdout, stderr) = ember(args);
        assert_eq!(code, Some(2), "ember {args:?}: {stderr}");
        assert!(stdout.is_empty(), "ember {args:?} printed {stdout}");
        assert_eq!(stderr.lines().count(), 1, "ember {args:?} printed more than one line:\n{stderr}");
        assert!(stderr.contains(named), "ember {args:?} does not name {named}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    }
}

#[test]
fn a_failing_job_exits_1_with_the_reason() {
    let (code, _, stderr) = ember(&["gen", "socket", "--kind", "file:/nonexistent/lines.txt", "--seconds", "0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/lines.txt"), "{stderr}");
}

/// Runs `ember wordcount --host 127.0.0.1 --port P --interval-ms 250` with `more` arguments
/// against a server on P that writes `writes` to its first client, each at once and `pause`
/// apart, then keeps the connection open for 2 s: exit code, stdout, stderr.
fn wordcount_against(writes: Vec<String>, pause: std::time::Duration, more: &[&str]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for write in writes {
            if conn.write_all(write.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    });
    let mut args = vec!["wordcount", "--host", "127.0.0.1", "--port", &port, "--interval-ms", "250"];
    args.extend_from_slice(more);
    let out = ember(&args);
    server.join().unwrap();
    out
}

#[test]
fn wordcount_reads_an_existing_server_with_host_and_port() {
    let writes = vec!["apple banana apple\n".to_owned(); 50];
    let (code, stdout, stderr) = wordcount_against(writes, std::time::Duration::from_millis(10), &["--batches", "4"]);
    assert_eq!(code, Some(0), "{stderr}");
    let pairs: Vec<&str> = stdout.lines().filter(|l| l.starts_with('(')).collect();
    assert!(pairs.iter().any(|p| p.starts_with("(apple,")), "{stdout}");
    assert!(
        pairs.iter().all(|p| p.starts_with("(apple,") || p.starts_with("(banana,")),
        "{stdout}"
    );
}

#[test]
fn wordcount_report_prints_a_line_per_batch_from_the_listener() {
    // Three lines a write: the receiver stores them as one block, which counts as three.
    let writes = vec!["apple banana apple\n".repeat(3); 10];
    let more = ["--batches", "6", "--report"];
    let (code, stdout, stderr) = wordcount_against(writes, std::time::Duration::from_millis(30), &more);
    assert_eq!(code, Some(0), "{stderr}");
    let field = |line: &str, name: &str| -> u64 {
        let value = line.split(' ').find_map(|f| f.strip_prefix(name)?.strip_prefix('='));
        value.unwrap_or_else(|| panic!("no {name} in {line}")).parse().unwrap()
    };
    let batches: Vec<&str> = stdout.lines().filter(|l| l.starts_with("BATCH ")).collect();
    assert!(batches.len() >= 5, "expected a line per batch:\n{stdout}");
    // Each batch once, in order, 250 ms apart; its total delay is scheduling plus processing.
    let times: Vec<u64> = batches.iter().map(|l| field(l, "time_ms")).collect();
    assert!(times.windows(2).all(|w| w[1] == w[0] + 250), "{times:?}");
    for line in &batches {
        assert_eq!(field(line, "total_ms"), field(line, "sched_ms") + field(line, "proc_ms"), "{line}");
    }
    // Every line the server sent is counted once as an input record, and the printed counts
    // agree with them (two keys: `print` shows every pair).
    assert_eq!(batches.iter().map(|l| field(l, "records")).sum::<u64>(), 30, "{stdout}");
    let counted = |word: &str| -> u64 {
        let prefix = format!("({word},");
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix)?.strip_suffix(')')?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!((counted("apple"), counted("banana")), (60, 30), "{stdout}");
}

#[test]
fn wordcount_serves_the_web_ui_with_ui_port() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["wordcount", "--batches", "8", "--interval-ms", "250", "--ui-port", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let address = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no UI address printed");
        if let Some(url) = line.trim().strip_prefix("Streaming UI: http://") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    // Wait for a completed batch, then read the statistics.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "GET /api/v1/streaming/statistics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
        if !body.contains("\"numTotalCompletedBatches\": 0") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "no batch completed: {body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(body.contains("\"batchDuration\": 250"), "{body}");
    assert!(body.contains("\"numReceivers\": 1"), "{body}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
