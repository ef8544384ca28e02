//! Replays the committed fuzz corpus (seeds and crash reproducers under `fuzz/corpus/<target>/`)
//! through the same checks the cargo-fuzz targets run, so a fixed finding stays fixed.

use std::path::Path;

use sipstamp::fuzzing::TARGETS;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, check) in TARGETS {
        let folder = root.join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
            .map(|entry| entry.expect("corpus entry readable").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "no corpus files for target {target}");
        for path in entries {
            let data = std::fs::read(&path).expect("corpus file readable");
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(
                result.is_ok(),
                "{target}: {} fails its checks",
                path.display()
            );
        }
    }
}
