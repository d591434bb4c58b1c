//! The image dataset formats: any bytes as an IDX file (MNIST's format), plain or
//! gzip-compressed, must read as an array or fail with an error naming the file; an array that
//! reads becomes a classification split (with each pixel scaling) or an error. The same bytes as
//! CIFAR-10 records parse into images and labels that make a split, or fail with an error. Never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgn::data::{
    IdxArray, PixelScale, image_classification_split, parse_cifar10_records, read_idx,
};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    if let Ok((images, labels)) = parse_cifar10_records(data, "records") {
        for pixels in PixelScale::ALL {
            image_classification_split(&images, &labels, 10, pixels, "records", "records")
                .expect("parsed CIFAR-10 records always make a split");
        }
    }
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
    for pixels in PixelScale::ALL {
        let _ = image_classification_split(&images, &labels, 10, pixels, "images", "labels");
    }
});
