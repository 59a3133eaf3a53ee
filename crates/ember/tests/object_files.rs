//! `save_as_object_files` and `Batch::read_object_files` against a real directory: both
//! formats round-trip on two workers (several partitions, an empty batch, awkward strings), a
//! directory appears under its name only when complete and replaces an earlier copy, and bad
//! input (a corrupt part file, no `_SUCCESS`) is an error naming the file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ember::ObjectFormat;
use ember::prelude::*;
use ember::testing::TempDir;
use serde::{Deserialize, Serialize};

const FORMATS: [ObjectFormat; 2] = [ObjectFormat::JsonLines, ObjectFormat::Binary];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
    tags: Vec<String>,
    note: Option<String>,
}

fn reading(i: u64) -> Reading {
    Reading {
        sensor: format!("sensor-{}", i % 7),
        celsius: i as f64 * 0.5 - 10.0,
        tags: (0..i % 3).map(|t| format!("t{t}")).collect(),
        note: i.is_multiple_of(2).then(|| format!("reading {i}")),
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `batches` (in 3 partitions, on 2 workers) through `save_as_object_files_with`, and
/// returns the context and every batch as the output saw it.
fn run<T: ember::Data>(
    prefix: &str,
    suffix: &str,
    format: ObjectFormat,
    batches: Vec<Option<Vec<T>>>,
) -> (StreamingContext, BTreeMap<Time, Batch<T>>) {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let n = batches.len() as u64;
    let stream = ssc.replay_stream(batches, 3);
    stream.save_as_object_files_with(prefix, suffix, format).unwrap();
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let sink = Arc::clone(&seen);
    stream
        .foreach_rdd(move |batch, time| {
            sink.lock().unwrap().insert(time, batch);
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(n));
    assert!(ssc.await_batch(Time::from_millis(n * 1000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (ssc, seen)
}

#[test]
fn both_formats_round_trip_through_the_reader_on_two_workers() {
    for format in FORMATS {
        let dir = TempDir::new("object-round-trip").unwrap();
        let prefix = format!("{}/readings", dir.path().display());
        let first: Vec<Reading> = (0..40).map(reading).collect();
        let third: Vec<Reading> = (40..45).map(reading).collect();
        let (ssc, seen) = run(&prefix, "obj", format, vec![Some(first.clone()), Some(vec![]), Some(third), None]);
        assert!(ssc.failures().is_empty(), "{format:?}: {:?}", ssc.failures());
        // Batch 4 has no RDD: nothing is written for it.
        assert_eq!(
            files_in(dir.path()),
            ["readings-1000.obj", "readings-2000.obj", "readings-3000.obj"],
            "{format:?}"
        );
        for (time, written) in &seen {
            let path = dir.path().join(format!("readings-{}.obj", time.milliseconds()));
            assert_eq!(
                files_in(&path),
                ["_SUCCESS", "part-00000", "part-00001", "part-00002"],
                "{format:?}"
            );
            let back: Batch<Reading> = Batch::read_object_files(&path).unwrap();
            assert_eq!(&back, written, "{format:?} at {time}");
            if format == ObjectFormat::Binary {
                let bytes = std::fs::read(path.join("part-00000")).unwrap();
                assert!(bytes.starts_with(b"EMBOBJ1\n"), "{format:?}");
            }
        }
        let empty: Batch<Reading> = Batch::read_object_files(dir.path().join("readings-2000.obj")).unwrap();
        assert_eq!(
            empty,
            Batch::from_partitions(Time::from_millis(2000), vec![vec![], vec![], vec![]]),
            "{format:?}"
        );
        let all: Batch<Reading> = Batch::read_object_files(dir.path().join("readings-1000.obj")).unwrap();
        assert_eq!(all.into_vec(), first, "{format:?}: partitions in order give the input back");
    }
}

#[test]
fn the_batch_time_comes_from_the_directory_name_when_it_has_one() {
    let dir = TempDir::new("object-time").unwrap();
    let batch = Batch::from_partitions(Time::from_millis(5000), vec![vec![1u32, 2], vec![3]]);
    for (name, ms) in [
        ("counts-5000", 5000),
        ("5000.json", 5000),
        ("my-app.v2-5000.json", 5000),
        ("snapshot", 0),
    ] {
        batch.save_as_object_file(dir.path().join(name)).unwrap();
        let back: Batch<u32> = Batch::read_object_files(dir.path().join(name)).unwrap();
        assert_eq!(back.time(), Time::from_millis(ms), "{name}");
        assert_eq!(back.partitions(), batch.partitions(), "{name}");
    }
    let url = format!("file://{}", dir.path().join("counts-5000").display());
    assert_eq!(Batch::<u32>::read_object_files(url).unwrap(), batch);
}

#[test]
fn json_lines_keep_newlines_quotes_and_unicode() {
    let awkward: Vec<String> = [
        "two\nlines",
        "crlf\r\nend",
        "\"quoted\" and 'single'",
        "back\\slash",
        "tab\there",
        "nul\u{0}byte",
        "unicode: é, 中文, 🦀, \u{2028}",
        "",
        "{\"not\": \"an object\"}",
    ]
    .map(String::from)
    .to_vec();
    let keyed: Vec<(String, HashMap<String, u64>)> = awkward.iter().map(|s| (s.clone(), HashMap::from([(s.clone(), 1)]))).collect();
    for format in FORMATS {
        let dir = TempDir::new("object-awkward").unwrap();
        let prefix = format!("file://{}/words", dir.path().display());
        let (ssc, seen) = run(&prefix, "", format, vec![Some(keyed.clone())]);
        assert!(ssc.failures().is_empty(), "{format:?}: {:?}", ssc.failures());
        let path = dir.path().join("words-1000");
        let back: Batch<(String, HashMap<String, u64>)> = Batch::read_object_files(&path).unwrap();
        assert_eq!(back, seen[&Time::from_millis(1000)], "{format:?}");
        assert_eq!(back.into_vec(), keyed, "{format:?}");
        if format == ObjectFormat::JsonLines {
            // One element per line: no string's newline reaches the file unescaped.
            let lines: usize = ["part-00000", "part-00001", "part-00002"]
                .iter()
                .map(|p| std::fs::read_to_string(path.join(p)).unwrap().lines().count())
                .sum();
            assert_eq!(lines, keyed.len());
        }
    }
}

#[test]
fn a_directory_is_visible_under_its_name_only_when_complete() {
    let dir = TempDir::new("object-atomic").unwrap();
    let prefix = format!("{}/big", dir.path().display());
    let (batches, per_batch) = (12u64, 30_000u64);
    let input: Vec<Option<Vec<u64>>> = (0..batches).map(|b| Some((b * per_batch..(b + 1) * per_batch).collect())).collect();
    // A reader polls the output directory while the batches are written: whatever it finds
    // under a batch's final name must be the whole batch.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (root, done) = (dir.path().to_owned(), Arc::clone(&done));
        std::thread::spawn(move || {
            // Each directory is read as soon as it is seen, when a partial one would show.
            let mut checked = std::collections::HashSet::new();
            while !done.load(Ordering::Relaxed) {
                for name in files_in(&root) {
                    if name.starts_with('.') || checked.contains(&name) {
                        continue;
                    }
                    let batch: Batch<u64> = Batch::read_object_files(root.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(batch.count(), per_batch, "{name} was visible before it was complete");
                    checked.insert(name);
                }
            }
            checked.len()
        })
    };
    for format in FORMATS {
        let (ssc, _) = run(&format!("{prefix}-{format:?}"), "", format, input.clone());
        assert!(ssc.failures().is_empty(), "{format:?}: {:?}", ssc.failures());
    }
    done.store(true, Ordering::Relaxed);
    let complete_reads = watcher.join().expect("the watcher found an incomplete directory");
    let names = files_in(dir.path());
    assert_eq!(names.len() as u64, 2 * batches, "no temporary directories are left: {names:?}");
    assert!(complete_reads > 0, "the watcher saw no directory appear");
}

#[test]
fn a_batch_written_again_replaces_the_first_copy_and_a_crashed_write_is_cleaned_up() {
    for format in FORMATS {
        let dir = TempDir::new("object-replace").unwrap();
        let target = dir.path().join("out-1000");
        // A copy from before a recovery, and what a write that crashed midway left.
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("part-00007"), "\"stale\"\n").unwrap();
        std::fs::write(target.join("_SUCCESS"), "").unwrap();
        std::fs::create_dir(dir.path().join(".out-1000.tmp")).unwrap();
        std::fs::write(dir.path().join(".out-1000.tmp/part-00000"), "\"half").unwrap();
        let prefix = format!("{}/out", dir.path().display());
        let (ssc, seen) = run(&prefix, "", format, vec![Some(vec!["x".to_string(), "y".to_string()])]);
        assert!(ssc.failures().is_empty(), "{format:?}: {:?}", ssc.failures());
        assert_eq!(
            files_in(&target),
            ["_SUCCESS", "part-00000", "part-00001", "part-00002"],
            "{format:?}"
        );
        assert_eq!(
            files_in(dir.path()),
            ["out-1000"],
            "{format:?}: no temporary or replaced copies are left"
        );
        let back: Batch<String> = Batch::read_object_files(&target).unwrap();
        assert_eq!(back, seen[&Time::from_millis(1000)], "{format:?}");
    }
}

#[test]
fn a_failed_write_leaves_nothing_and_names_the_path_and_the_element() {
    let dir = TempDir::new("object-fail").unwrap();
    // JSON object keys must be strings: a map keyed by pairs cannot be written as JSON lines.
    let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![], vec![HashMap::from([((1u8, 2u8), 3u8)])]]);
    let target = dir.path().join("pairs-1000");
    let err = batch.save_as_object_file(&target).unwrap_err().to_string();
    assert!(
        err.contains(&target.display().to_string()) && err.contains("element 0 of partition 1"),
        "{err}"
    );
    assert!(
        files_in(dir.path()).is_empty(),
        "nothing is left behind: {:?}",
        files_in(dir.path())
    );
    // The binary form has no such limit.
    batch.save_as_object_file_with(&target, ObjectFormat::Binary).unwrap();
    let back: Batch<HashMap<(u8, u8), u8>> = Batch::read_object_files(&target).unwrap();
    assert_eq!(back, batch);

    // In a stream, the batch fails with the operator's name and the path; nothing is written.
    let prefix = format!("{}/no/such/dir/out", dir.path().display());
    let (ssc, _) = run(&prefix, "", ObjectFormat::Binary, vec![Some(vec![1u8])]);
    let failures: Vec<String> = ssc.failures().iter().map(ToString::to_string).collect();
    assert!(
        failures
            .iter()
            .any(|f| f.contains("save_as_object_files") && f.contains("no/such/dir/out-1000")),
        "{failures:?}"
    );
}

#[test]
fn a_corrupt_part_file_is_an_error_naming_it_and_the_record() {
    let dir = TempDir::new("object-corrupt").unwrap();
    let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1u64, 2], vec![3, 4, 5]]);
    let json = dir.path().join("json-1000");
    batch.save_as_object_file(&json).unwrap();
    let part = json.join("part-00001");
    let read = |path: &Path| Batch::<u64>::read_object_files(path).unwrap_err().to_string();

    std::fs::write(&part, "3\n4\n{not json\n").unwrap();
    let err = read(&json);
    assert!(err.contains(&part.display().to_string()) && err.contains("line 3"), "{err}");
    std::fs::write(&part, "3\n\"four\"\n").unwrap();
    let err = read(&json);
    assert!(err.contains(&part.display().to_string()) && err.contains("line 2"), "{err}");
    std::fs::write(&part, [b'3', b'\n', 0xff, 0xfe]).unwrap();
    let err = read(&json);
    assert!(err.contains(&part.display().to_string()) && err.contains("line 2"), "{err}");

    let binary = dir.path().join("binary-1000");
    batch.save_as_object_file_with(&binary, ObjectFormat::Binary).unwrap();
    let part = binary.join("part-00001");
    let bytes = std::fs::read(&part).unwrap();
    // Each record of a small u64 is a 4-byte length and 1 byte: record 2 starts at 8 + 2 * 5.
    std::fs::write(&part, &bytes[..bytes.len() - 1]).unwrap();
    let err = read(&binary);
    assert!(
        err.contains(&part.display().to_string()) && err.contains("record 2 at byte offset 18"),
        "{err}"
    );
    let mut wrong_length = bytes.clone();
    wrong_length[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&part, &wrong_length).unwrap();
    let err = read(&binary);
    assert!(
        err.contains(&part.display().to_string()) && err.contains("record 0 at byte offset 8"),
        "{err}"
    );
    // Read as another type, the records do not decode.
    std::fs::write(&part, &bytes).unwrap();
    let err = Batch::<String>::read_object_files(&binary).unwrap_err().to_string();
    assert!(err.contains("part-0000") && err.contains("byte offset 8"), "{err}");
}

#[test]
fn a_directory_without_success_is_refused() {
    let dir = TempDir::new("object-incomplete").unwrap();
    let target = dir.path().join("counts-1000");
    Batch::from_vec(Time::from_millis(1000), vec![1u8, 2, 3])
        .save_as_object_file(&target)
        .unwrap();
    std::fs::remove_file(target.join("_SUCCESS")).unwrap();
    let err = Batch::<u8>::read_object_files(&target).unwrap_err().to_string();
    assert!(
        err.contains(&target.join("_SUCCESS").display().to_string()) && err.contains("not completely written"),
        "{err}"
    );

    let missing = dir.path().join("counts-2000");
    let err = Batch::<u8>::read_object_files(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}
