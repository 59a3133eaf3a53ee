//! `save_as_text_files` against a real directory: Spark's layout (`prefix-<ms>.suffix`,
//! `part-0000N`, `_SUCCESS`), elements in Spark's text form, a batch written again replacing
//! the first copy, and an unwritable path failing the batch with an error naming it.

use std::path::Path;

use ember::prelude::*;
use ember::testing::TempDir;

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn run(prefix: &str, suffix: &str, batches: Vec<Option<Vec<(String, u64)>>>) -> StreamingContext {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let n = batches.len() as u64;
    ssc.replay_stream(batches, 2).save_as_text_files(prefix, suffix).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(n));
    assert!(ssc.await_batch(Time::from_millis(n * 1000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    ssc
}

#[test]
fn every_batch_is_a_directory_in_sparks_layout() {
    let dir = TempDir::new("save-layout").unwrap();
    let prefix = format!("{}/counts", dir.path().display());
    let batch = |words: &[(&str, u64)]| Some(words.iter().map(|(w, n)| (w.to_string(), *n)).collect());
    let ssc = run(&prefix, "txt", vec![batch(&[("a", 1), ("b", 2), ("c", 3)]), batch(&[]), None]);
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    // Batch 3 has no RDD: nothing is written for it.
    assert_eq!(files_in(dir.path()), vec!["counts-1000.txt", "counts-2000.txt"]);
    let first = dir.path().join("counts-1000.txt");
    assert_eq!(files_in(&first), vec!["_SUCCESS", "part-00000", "part-00001"]);
    let read = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_eq!(read(&first, "part-00000"), "(a,1)\n");
    assert_eq!(read(&first, "part-00001"), "(b,2)\n(c,3)\n");
    assert_eq!(read(&first, "_SUCCESS"), "");
    let empty = dir.path().join("counts-2000.txt");
    assert_eq!(read(&empty, "part-00000") + &read(&empty, "part-00001"), "");
}

#[test]
fn a_batch_written_again_replaces_the_first_copy() {
    let dir = TempDir::new("save-replace").unwrap();
    let stale = dir.path().join("out-1000");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("part-00007"), "stale\n").unwrap();
    let prefix = format!("file://{}/out", dir.path().display());
    let ssc = run(&prefix, "", vec![Some(vec![("x".into(), 1)])]);
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    assert_eq!(files_in(&stale), vec!["_SUCCESS", "part-00000", "part-00001"]);
    // No temporary or replaced copies are left behind.
    assert_eq!(files_in(dir.path()), vec!["out-1000"]);
}

#[test]
fn replacements_a_crash_interrupted_are_finished_for_batches_that_do_not_run_again() {
    let dir = TempDir::new("save-interrupted").unwrap();
    let make = |name: &str, line: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("part-00000"), line).unwrap();
        std::fs::write(d.join("_SUCCESS"), "").unwrap();
    };
    // Killed between the two renames: the old copy is the only one, and is put back.
    make(".out-500.old", "(kept,1)\n");
    // Killed after the new copy was in place: the old copy goes.
    make("out-700", "(new,1)\n");
    make(".out-700.old", "(old,1)\n");
    let prefix = format!("{}/out", dir.path().display());
    let ssc = run(&prefix, "", vec![Some(vec![("x".into(), 1)])]);
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    assert_eq!(files_in(dir.path()), vec!["out-1000", "out-500", "out-700"]);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name).join("part-00000")).unwrap();
    assert_eq!(read("out-500"), "(kept,1)\n");
    assert_eq!(read("out-700"), "(new,1)\n");
}

#[test]
fn an_unwritable_path_fails_the_batch_naming_it() {
    let dir = TempDir::new("save-missing").unwrap();
    let prefix = format!("{}/no/such/dir/out", dir.path().display());
    let ssc = run(&prefix, "", vec![Some(vec![("x".into(), 1)])]);
    let failures: Vec<String> = ssc.failures().iter().map(ToString::to_string).collect();
    assert!(
        failures
            .iter()
            .any(|f| f.contains("save_as_text_files") && f.contains("no/such/dir/out-1000")),
        "{failures:?}"
    );
}

#[test]
fn a_batch_saves_as_a_text_file_directory_inside_foreach_rdd_replacing_a_previous_copy() {
    let dir = TempDir::new("batch-save").unwrap();
    let root = dir.path().to_owned();
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&errors);
    let out = root.clone();
    ssc.replay_stream(vec![Some(vec![("a".to_string(), 1u64), ("b".to_string(), 2)]), Some(vec![])], 2)
        .foreach_rdd(move |batch, time| {
            // The seeds' pattern: one directory per batch, named by its time.
            let path = out.join(format!("counts-{}", time.milliseconds()));
            if let Err(e) = batch.save_as_text_file(&path) {
                sink.lock().unwrap().push(e.to_string());
            }
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock().unwrap());
    let first = root.join("counts-1000");
    assert_eq!(files_in(&first), ["_SUCCESS", "part-00000", "part-00001"]);
    let text: String = ["part-00000", "part-00001"]
        .iter()
        .map(|p| std::fs::read_to_string(first.join(p)).unwrap())
        .collect();
    assert_eq!(text, "(a,1)\n(b,2)\n");
    let empty = root.join("counts-2000");
    assert_eq!(files_in(&empty), ["_SUCCESS", "part-00000", "part-00001"]);
    assert_eq!(std::fs::read_to_string(empty.join("part-00000")).unwrap(), "");

    // Written again (a replay after a recovery): one copy, the new content.
    let again = Batch::from_partitions(Time::from_millis(1000), vec![vec![("c".to_string(), 3u64)]]);
    again.save_as_text_file(&first).unwrap();
    assert_eq!(files_in(&first), ["_SUCCESS", "part-00000"]);
    assert_eq!(std::fs::read_to_string(first.join("part-00000")).unwrap(), "(c,3)\n");
    assert_eq!(files_in(&root), ["counts-1000", "counts-2000"], "no temporary directories left");

    // A missing parent directory: an error naming the path, nothing written.
    let missing = root.join("no-such-dir").join("counts-3000");
    let err = again.save_as_text_file(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!missing.exists());
}
