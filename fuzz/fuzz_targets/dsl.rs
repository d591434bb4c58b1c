//! The model language: any bytes as a model file. Parsing, type-checking and lowering must end in
//! a model or a diagnostic that renders at a position inside the source; a model that parses must
//! differentiate or fail with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgn::{Error, Model};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let parsed = match std::str::from_utf8(data) {
        Ok(source) => Model::parse(source),
        // Not UTF-8: the file reader's own error path.
        Err(_) => {
            let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
            file.write_all(data).expect("writable");
            Model::from_file(file.path())
        }
    };
    match parsed {
        Ok(model) => {
            let _ = model.derive();
        }
        Err(Error::Dsl(diagnostic)) => {
            let rendered = diagnostic.to_string();
            let lines = String::from_utf8_lossy(data).lines().count();
            assert!(
                (diagnostic.span.line as usize) <= lines + 1,
                "line {} of {lines}: {rendered}",
                diagnostic.span.line
            );
        }
        Err(other) => panic!("a model file error that is not a diagnostic: {other}"),
    }
});
