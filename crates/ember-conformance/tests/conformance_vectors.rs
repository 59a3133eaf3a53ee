//! Runs the shared conformance vectors (when the checkout has `../shared` beside it) on 1 and
//! 2 workers; every vector must pass or be skipped with a reason.

use ember_conformance::{Outcome, run_all};

#[test]
fn shared_vectors_pass_on_one_and_two_workers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/spark_vectors.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("SKIP: {path} not found");
        return;
    };
    for workers in [1, 2] {
        let mut failures = Vec::new();
        let summary = run_all(&text, workers, |id, o| {
            if let Outcome::Fail(why) = o {
                failures.push(format!("{id}: {why}"));
            }
        })
        .unwrap();
        assert!(failures.is_empty(), "{workers} workers: {failures:#?}");
        assert!(summary.passed >= 42, "{summary:?}");
    }
}

#[test]
fn a_wrong_expectation_fails() {
    let vector = r#"[{"id":"t/map","source":"x","op":[{"op":"map","func":"plus_1"}],"op_under_test":"map",
        "input":[[1,2]],"batch_ms":100,"num_batches":1,"input_partitions":1,"params":{},
        "expected":[[2,4]],"ordered":true,"output_mode":"all","spark_check":"list","notes":""}]"#;
    let mut outcomes = Vec::new();
    let summary = run_all(vector, 1, |_, o| outcomes.push(o.clone())).unwrap();
    assert_eq!(summary.failed, 1);
    assert!(matches!(&outcomes[0], Outcome::Fail(why) if why.contains("expected [2, 4], got [2, 3]")));
}
