//! Boston housing: 506 examples of 13 features, regression of MEDV (median home value in
//! $1000s), from the CSV that scikit-learn ships.

use super::cache::{Cached, CachedFile, Package, Source};
use super::{
    BostonFeatures, Dataset, Split, Standardization, data_error, seeded_rng, shuffled_indices,
};
use crate::Result;
use ndarray::{Array2, Axis};
use std::path::Path;

/// `boston_house_prices.csv` from the Debian package `python3-sklearn` (1.2.1+dfsg-1), pinned by
/// the sha256 of the file as that package ships it.
pub(crate) static BOSTON: Source = Source {
    dir: "boston",
    package: Package::Deb {
        name: "python3-sklearn",
    },
    member_dir: "usr/lib/python3/dist-packages/sklearn/datasets/data",
    files: &[CachedFile {
        name: "boston_house_prices.csv",
        sha256: "d98212636026544fc9b9c0f372e5f819872e6fa6fa757ab025efdda22180f2d6",
    }],
};

/// The held-out examples; the other 406 are for training.
const TEST_SIZE: usize = 100;
/// The fixed seed of the train/test shuffle, so that every run and machine splits alike.
const SPLIT_SEED: u64 = 0;
/// Separates the split's random stream from the other seeded streams of the data module.
const SPLIT_STREAM: &[u8; 8] = b"boston\0\0";

/// The Boston dataset from the verified cached CSV: shuffled with a fixed seed into 406 train
/// and 100 test examples, features standardized with the train statistics (or raw, as
/// `features` says), the target divided by its train maximum.
pub(crate) fn dataset(cached: &Cached, features_as: BostonFeatures) -> Result<Dataset> {
    let path = &cached.fetched.files[0];
    let (features, targets) = parse_csv(&cached.contents[0], path)?;
    if features.nrows() <= TEST_SIZE {
        return Err(data_error(format!(
            "{}: {} rows leave nothing to train on after holding out {TEST_SIZE}",
            path.display(),
            features.nrows()
        )));
    }
    let order = shuffled_indices(
        features.nrows(),
        &mut seeded_rng(SPLIT_SEED, 0, SPLIT_STREAM),
    );
    let (train_rows, test_rows) = order.split_at(features.nrows() - TEST_SIZE);
    let mut train = Split {
        features: features.select(Axis(0), train_rows),
        targets: targets.select(Axis(0), train_rows),
    };
    let mut test = Split {
        features: features.select(Axis(0), test_rows),
        targets: targets.select(Axis(0), test_rows),
    };
    if features_as == BostonFeatures::Standardized {
        let fitted = Standardization::fit(&train.features)?;
        fitted.apply(&mut train.features, "the boston train split")?;
        fitted.apply(&mut test.features, "the boston test split")?;
    }
    let target_scale = train.targets.fold(f32::NEG_INFINITY, |m, &t| m.max(t));
    if target_scale <= 0.0 {
        return Err(data_error(format!(
            "{}: the largest train target is {target_scale}; scaling by it needs a positive one",
            path.display()
        )));
    }
    train.targets /= target_scale;
    test.targets /= target_scale;
    Ok(Dataset {
        name: match features_as {
            BostonFeatures::Standardized => "boston".to_string(),
            BostonFeatures::Raw => "boston (raw features)".to_string(),
        },
        train,
        test,
        num_classes: None,
        target_scale,
        image: None,
        // Part of the dataset's definition (its name says which), not a user's choice.
        standardization: None,
    })
}

/// Features (`rows × 13`) and targets (`rows × 1`) from scikit-learn's CSV layout: a first line
/// `rows,features,…`, a line of column names, then the rows, the target in the last column.
fn parse_csv(bytes: &[u8], path: &Path) -> Result<(Array2<f32>, Array2<f32>)> {
    let file = path.display();
    let text = std::str::from_utf8(bytes)
        .map_err(|e| data_error(format!("{file}: not UTF-8 text: {e}")))?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).enumerate();
    let counts = lines.next().map(|(_, l)| l).unwrap_or_default();
    let declared = |i: usize| counts.split(',').nth(i).and_then(|f| f.trim().parse().ok());
    let (Some(rows), Some(num_features)) = (declared(0), declared(1)) else {
        return Err(data_error(format!(
            "{file}:1: expected the counts line `rows,features,…`, found `{counts}`"
        )));
    };
    let columns = num_features + 1;
    let header_columns = lines.next().map_or(0, |(_, l)| l.split(',').count());
    if header_columns != columns {
        return Err(data_error(format!(
            "{file}:2: expected {columns} column names ({num_features} features and the target), \
             found {header_columns}"
        )));
    }
    // Not preallocated from the declared count, which is only checked at the end.
    let mut values = Vec::new();
    let mut found = 0;
    for (index, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != columns {
            return Err(data_error(format!(
                "{file}:{}: expected {columns} values, found {}",
                index + 1,
                fields.len()
            )));
        }
        for field in fields {
            let value: f32 = field.trim().parse().map_err(|_| {
                data_error(format!("{file}:{}: `{field}` is not a number", index + 1))
            })?;
            if !value.is_finite() {
                return Err(data_error(format!(
                    "{file}:{}: `{field}` is not finite",
                    index + 1
                )));
            }
            values.push(value);
        }
        found += 1;
    }
    if found != rows {
        return Err(data_error(format!(
            "{file}: the first line declares {rows} rows, the file has {found}"
        )));
    }
    let table = Array2::from_shape_vec((rows, columns), values)
        .expect("every row was checked to have `columns` values");
    let features = table.slice(ndarray::s![.., ..num_features]).to_owned();
    let targets = table.slice(ndarray::s![.., num_features..]).to_owned();
    Ok((features, targets))
}
