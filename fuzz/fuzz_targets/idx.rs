//! IDX dataset files (MNIST's format), plain or gzip-compressed: any bytes must read as an array
//! or fail with an error naming the file; an array that reads becomes a classification split or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgn::data::{IdxArray, image_classification_split, read_idx};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("writable");
    let Ok(images) = read_idx(file.path()) else {
        return;
    };
    // Labels that fit the images' count, so that the split checks the images themselves. (A
    // real label file holds one byte per label, which bounds the count: so does the input here.)
    let count = images.dims.first().copied().unwrap_or(0);
    if count > data.len() {
        return;
    }
    let labels = IdxArray {
        dims: vec![count],
        data: (0..count).map(|i| (i % 10) as u8).collect(),
    };
    let _ = image_classification_split(&images, &labels, 10, "images", "labels");
});
