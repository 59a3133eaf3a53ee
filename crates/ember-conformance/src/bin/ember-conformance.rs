//! `ember-conformance <vectors.json> [--workers N]`: runs Spark's streaming conformance
//! vectors against ember, one line per vector, and exits non-zero on any failed or skipped
//! vector (every vector, the recovery ones included, must run).

use std::process::ExitCode;

use ember_conformance::{Outcome, run_all};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut path, mut workers) = (None, 1usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" | "-w" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => workers = n,
                _ => {
                    eprintln!("error: --workers needs a positive number");
                    return ExitCode::from(2);
                }
            },
            _ => path = Some(arg),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: ember-conformance <vectors.json> [--workers N]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = run_all(&text, workers, |id, outcome| match outcome {
        Outcome::Pass => println!("PASS {id}"),
        Outcome::Fail(why) => println!("FAIL {id}: {why}"),
        Outcome::Skip(why) => println!("SKIP {id}: {why}"),
    });
    match result {
        Ok(s) => {
            println!("{} passed, {} failed, {} skipped", s.passed, s.failed, s.skipped);
            if s.failed > 0 || s.skipped > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {path}: {e}");
            ExitCode::from(2)
        }
    }
}
