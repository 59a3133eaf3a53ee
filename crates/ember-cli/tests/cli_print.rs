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

#[test]
fn unknown_command_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember")).arg("nope").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: ember wordcount"));
}
