//! `ember cluster`, the supervisor: it gives every process its place and one secret, prefixes
//! their lines, restarts the whole cluster when a process fails, gives up when its restart
//! strategy says so (exit 1, saying why), reports a program that cannot start, and stops the
//! processes when it is told to stop. The programs here are shell scripts: what is checked is
//! the supervisor; ember jobs under it are the cluster tests' concern.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn ember_cluster(args: &[&str], script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .env_remove("EMBER_CLUSTER_SECRET")
        .env_remove("EMBER_CLUSTER_SECRET_FILE")
        .arg("cluster")
        .args(args)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_failed_process_brings_the_whole_cluster_back_with_its_place_and_secret() {
    let dir = std::env::temp_dir().join(format!("ember-supervisor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Process 1 fails on the first run; every run of every process leaves a line in `runs`.
    let script = format!(
        "echo \"$EMBER_CLUSTER_PROCESS\" >> {dir}/runs; \
         if [ \"$EMBER_CLUSTER_PROCESS\" = 1 ] && [ ! -e {dir}/failed ]; then touch {dir}/failed; echo boom >&2; exit 3; fi; \
         echo \"process $EMBER_CLUSTER_PROCESS of $EMBER_CLUSTER_ADDRESSES control $EMBER_CLUSTER_CONTROL secret ${{#EMBER_CLUSTER_SECRET}}\"",
        dir = dir.display()
    );
    let out = ember_cluster(&["-n", "2", "--restart-delay-ms", "50"], &script);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ember cluster: process 1 exited with 3; stopping the others"),
        "{stderr}"
    );
    assert!(stderr.contains("[p1] boom"), "{stderr}");
    assert_eq!(stderr.matches("restarting all 2 processes").count(), 1, "{stderr}");
    // The second run: both processes, each with its index, the same two addresses, one
    // 64-digit secret.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(" of ")).collect();
    for (index, prefix) in [(0, "[p0] "), (1, "[p1] ")] {
        let mine: Vec<&&str> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
        // Process 1 printed once (its first run failed first); process 0 once or twice.
        assert!(!mine.is_empty() && (index == 0 || mine.len() == 1), "{prefix}:\n{stdout}");
        for line in mine {
            assert!(line.starts_with(&format!("{prefix}process {index} of 127.0.0.1:")), "{line}");
            assert!(line.ends_with(" secret 64"), "{line}");
        }
    }
    let runs = std::fs::read_to_string(dir.join("runs")).unwrap();
    assert_eq!(runs.lines().filter(|l| *l == "1").count(), 2, "process 1 ran twice: {runs}");
    assert!(!stdout.contains("secret 0"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_fixed_delay_strategy_gives_up_after_its_attempts_saying_why() {
    let out = ember_cluster(&["-n", "2", "--restart-attempts", "2", "--restart-delay-ms", "10"], "exit 7");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("restarting all 2 processes").count(), 2, "{stderr}");
    assert!(
        stderr.contains("giving up: process") && stderr.contains("exited with 7, and the fixed-delay strategy allows 2 restarts"),
        "{stderr}"
    );
}

#[test]
fn the_failure_rate_strategy_gives_up_past_its_rate() {
    let out = ember_cluster(
        &[
            "-n",
            "1",
            "--max-failures-per-interval",
            "1",
            "--failure-interval-s",
            "60",
            "--restart-delay-ms",
            "10",
        ],
        "exit 5",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("restarting all 1 processes").count(), 1, "{stderr}");
    assert!(
        stderr.contains("2 failures within 60 s, more than the failure-rate strategy's 1"),
        "{stderr}"
    );
}

#[test]
fn a_program_that_cannot_start_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["cluster", "-n", "2", "--", "/nonexistent/ember-job", "--flag"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start process 0: /nonexistent/ember-job"), "{stderr}");
}

#[test]
fn sigterm_stops_the_processes_and_the_supervisor() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["cluster", "-n", "2", "--", "sh", "-c", "echo up; exec sleep 30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the supervisor did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(exited.success(), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(text(&out.stderr).contains("stopping the 2 processes"), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("up").count(), 2, "{}", text(&out.stdout));
}

/// The job the supervisor runs in `a_real_cluster_job_is_brought_back_after_a_process_dies`:
/// this test binary again, joining the cluster `ember cluster` describes in the environment
/// (`cluster_from_env`, and the secret at start). It sums 20 batches of numbers by `x % 3`
/// across both processes; process 0 writes each batch's sums to `sums.txt`, and stops the
/// cluster after the 20th. On its first run, process 1 exits with 3 mid-job.
#[test]
fn supervised_child() {
    use ember::prelude::*;
    use std::io::Write;
    let Ok(dir) = std::env::var("EMBER_SUPERVISED_CHILD") else { return };
    let dir = std::path::PathBuf::from(dir);
    let process: usize = std::env::var("EMBER_CLUSTER_PROCESS").unwrap().parse().unwrap();
    println!("tls {}", std::env::var("EMBER_CLUSTER_TLS").unwrap_or_default());
    let ssc = StreamingContext::builder(milliseconds(100))
        .cluster_from_env()
        .unwrap()
        .build()
        .unwrap();
    let input: Vec<Option<Vec<u64>>> = (0..20u64).map(|b| Some((b * 10..b * 10 + 10).collect())).collect();
    let sums = ssc.replay_stream(input, 4).map(|x| (x % 3, x)).reduce_by_key(|a, b| a + b);
    let out = dir.join("sums.txt");
    if process == 0 {
        std::fs::write(&out, "").unwrap();
    }
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&seen);
    sums.foreach_rdd(move |batch, _time| {
        let mut sums = batch.into_vec();
        if sums.is_empty() {
            return;
        }
        sums.sort();
        let line: Vec<String> = sums.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        writeln!(file, "{}", line.join(" ")).unwrap();
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .unwrap();
    ssc.start().unwrap();
    let marker = dir.join("process-1-died");
    if process == 1 && !marker.exists() {
        std::thread::sleep(std::time::Duration::from_millis(400));
        std::fs::write(&marker, "").unwrap();
        std::process::exit(3);
    }
    if process == 0 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.load(std::sync::atomic::Ordering::SeqCst) < 20 {
            assert!(std::time::Instant::now() < deadline, "20 batches did not come");
            if ssc.await_termination_or_timeout(milliseconds(20)).unwrap() {
                panic!("the cluster stopped before 20 batches");
            }
        }
        ssc.stop(true).unwrap();
    } else {
        assert!(ssc.await_termination_or_timeout(seconds(60)).unwrap(), "process 1 was not stopped");
    }
}

#[test]
fn a_real_cluster_job_is_brought_back_after_a_process_dies() {
    if std::env::var("EMBER_SUPERVISED_CHILD").is_ok() {
        return;
    }
    run_the_supervised_job("plain", &[]);
}

/// The same job with `--tls`: every process has `EMBER_CLUSTER_TLS=1` and the job gives the
/// same sums across the restart (what TLS hides on the wire: `ember`'s `cluster_tls.rs`).
#[test]
fn a_real_cluster_job_runs_over_tls_across_a_restart() {
    if std::env::var("EMBER_SUPERVISED_CHILD").is_ok() {
        return;
    }
    let stdout = run_the_supervised_job("tls", &["--tls"]);
    for process in 0..2 {
        let prefix = format!("[p{process}] ");
        assert!(stdout.lines().any(|l| l.starts_with(&prefix) && l.ends_with("tls 1")), "{stdout}");
    }
}

/// Runs `supervised_child` under `ember cluster` with `args`, checks the sums and returns
/// what the processes printed.
fn run_the_supervised_job(name: &str, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("ember-supervised-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["cluster", "-n", "2", "--restart-delay-ms", "100"])
        .args(args)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "supervised_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_SUPERVISED_CHILD", &dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("process 1 exited with 3"), "{stderr}");
    assert_eq!(stderr.matches("restarting all 2 processes").count(), 1, "{stderr}");
    // The restarted cluster's 20 batches, each summed over both processes' keys.
    let sums = std::fs::read_to_string(dir.join("sums.txt")).unwrap();
    let expected: Vec<String> = (0..20u64)
        .map(|b| {
            (0..3u64)
                .map(|k| format!("{k}:{}", (b * 10..b * 10 + 10).filter(|x| x % 3 == k).sum::<u64>()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(sums.lines().collect::<Vec<_>>(), expected, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    stdout
}

/// `--scale-file`: writing another count stops the processes and starts that many, each with
/// the new address list; not a failure, so no restart is counted.
#[test]
fn a_new_count_in_the_scale_file_rescales_the_cluster() {
    let dir = std::env::temp_dir().join(format!("ember-rescale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scale = dir.join("scale");
    std::fs::write(&scale, "3\n").unwrap();
    let runs = dir.join("runs");
    // Each process records the cluster size it was given; at 2 processes they finish, at any
    // other count they wait to be rescaled.
    let script = format!(
        "size=$(echo \"$EMBER_CLUSTER_ADDRESSES\" | tr ',' '\\n' | wc -l); echo \"$size\" >> {runs}; \
         if [ \"$size\" -eq 2 ]; then exit 0; fi; exec sleep 30",
        runs = runs.display()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["cluster", "-n", "1", "--scale-file"])
        .arg(&scale)
        .args(["--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&runs).unwrap_or_default();
            if text.lines().count() >= want {
                return text;
            }
            assert!(Instant::now() < deadline, "{want} runs did not come: {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The file's 3 wins over -n 1 at start; then 3 -> 2.
    assert_eq!(lines(3).lines().collect::<Vec<_>>(), ["3", "3", "3"]);
    std::fs::write(&scale, "2").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("rescaling from 3 to 2 processes"), "{stderr}");
    assert!(!stderr.contains("restarting"), "a rescale counted as a failure: {stderr}");
    let text = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), ["3", "3", "3", "2", "2"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A secret in the supervisor's environment is the one its processes get.
#[test]
fn a_secret_in_the_supervisors_environment_is_passed_on() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .env("EMBER_CLUSTER_SECRET", "a secret pinned for every supervisor")
        .args(["cluster", "-n", "2", "--", "sh", "-c", "echo \"got $EMBER_CLUSTER_SECRET\""])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stdout.matches("got a secret pinned for every supervisor").count(), 2, "{stdout}");
    // Too short a secret is refused before anything starts, without printing it.
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .env("EMBER_CLUSTER_SECRET", "short")
        .args(["cluster", "-n", "2", "--", "sh", "-c", "echo started"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("EMBER_CLUSTER_SECRET") && stderr.contains("at least 16"),
        "{stderr}"
    );
    assert!(!stderr.contains("short") && !text(&out.stdout).contains("started"), "{stderr}");
}

/// A process that leaves a child behind holding its output open does not hold the supervisor
/// up once the process itself has exited.
#[test]
fn a_child_left_holding_the_output_does_not_hang_the_supervisor() {
    let started = Instant::now();
    let out = ember_cluster(&["-n", "1"], "sleep 30 & echo done");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("[p0] done"), "{}", text(&out.stdout));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}
