//! `Tensor::compare`, which every numeric check of the suite goes through: non-finite values
//! match only exactly, one infinity does not hide the errors of the finite values, relative
//! errors use their floor, and failures name the element and both values.

use sgn::ir::DType;
use sgn::ir::tensor::{Floor, Tensor, relative_error};

fn t(values: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F64, &[values.len()], values.to_vec()).unwrap()
}

const INF: f64 = f64::INFINITY;
const NONE: Floor = Floor::Absolute(0.0);
const SCALE: Floor = Floor::OfLargest(1.0);

#[test]
fn an_infinity_against_a_finite_value_is_a_mismatch_at_any_tolerance() {
    for floor in [NONE, SCALE, Floor::Absolute(1e300)] {
        let c = t(&[1.0, INF, 3.0]).compare(&t(&[1.0, 2.0, 3.0]), floor);
        assert!(!c.within(f64::MAX), "{c}");
        assert_eq!(c.max_error(), INF);
        let m = c.non_finite_mismatch.as_ref().expect("a mismatch");
        assert_eq!((m.index.clone(), m.values), (vec![1], (INF, 2.0)));
        assert_eq!(c.to_string(), "non-finite mismatch at [1]: inf vs 2e0");
        // Either side, and against the largest finite value.
        let c = t(&[f64::MAX]).compare(&t(&[INF]), floor);
        assert!(!c.within(f64::MAX), "{c}");
    }
}

#[test]
fn infinities_match_only_the_same_infinity() {
    let c = t(&[INF, -INF]).compare(&t(&[INF, -INF]), NONE);
    assert!(c.within(0.0), "{c}");
    assert_eq!(c.to_string(), "equal");
    let c = t(&[INF, -INF]).compare(&t(&[INF, INF]), SCALE);
    assert_eq!(c.non_finite_mismatch.unwrap().values, (-INF, INF));
}

#[test]
fn nan_matches_only_nan() {
    let nan = f64::NAN;
    assert!(t(&[nan, 1.0]).compare(&t(&[-nan, 1.0]), NONE).within(0.0));
    for other in [0.0, 1.0, INF, -INF] {
        let c = t(&[1.0, nan]).compare(&t(&[1.0, other]), SCALE);
        assert!(!c.within(f64::MAX), "NaN vs {other}: {c}");
        assert_eq!(c.non_finite_mismatch.unwrap().index, vec![1]);
        let c = t(&[other]).compare(&t(&[nan]), SCALE);
        assert!(!c.within(f64::MAX), "{other} vs NaN: {c}");
    }
}

#[test]
fn the_first_non_finite_mismatch_is_named_in_row_major_order() {
    let a = Tensor::from_f64(DType::F64, &[2, 3], vec![0.0, 1.0, 2.0, 3.0, INF, f64::NAN]).unwrap();
    let b = Tensor::from_f64(DType::F64, &[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let c = a.compare(&b, SCALE);
    assert_eq!(c.non_finite_mismatch.unwrap().index, vec![1, 1]);
}

#[test]
fn one_infinity_does_not_hide_the_errors_of_the_finite_values() {
    // With the infinity at the same place in both, the finite values are still measured: the
    // scale is the largest finite magnitude (2), not infinity.
    let c = t(&[INF, 1.0, 2.0]).compare(&t(&[INF, 1.5, 2.0]), SCALE);
    assert!(c.non_finite_mismatch.is_none());
    assert_eq!(c.floor, 2.0);
    assert_eq!(c.max_error(), 0.25);
    let worst = c.worst.as_ref().unwrap();
    assert_eq!((worst.index.clone(), worst.values), (vec![1], (1.0, 1.5)));
    assert!(!c.within(0.2));
    assert_eq!(
        c.to_string(),
        "max relative error 2.5e-1 (floor 2e0) at [1]: 1e0 vs 1.5e0"
    );
}

#[test]
fn the_floor_bounds_the_denominator_of_each_relative_error() {
    let (a, b) = (t(&[100.0, 1e-3]), t(&[100.0, 2e-3]));
    // Per element: 1e-3 against 2e-3 is off by half.
    assert_eq!(a.compare(&b, NONE).max_error(), 0.5);
    // Against a floor of 1e-2 of the largest value (1), by a thousandth.
    let c = a.compare(&b, Floor::OfLargest(1e-2));
    assert_eq!(c.floor, 1.0);
    assert!((c.max_error() - 1e-3).abs() < 1e-15, "{c}");
    assert!((a.compare(&b, Floor::Absolute(10.0)).max_error() - 1e-4).abs() < 1e-15);
    // The floor only ever lowers an element's error.
    assert_eq!(relative_error(3.0, 4.0, 1.0), 0.25);
    assert_eq!(relative_error(3.0, 4.0, 8.0), 0.125);
}

#[test]
fn zeros_compare_equal_whatever_their_sign() {
    for floor in [NONE, SCALE] {
        let c = t(&[0.0, -0.0, 0.0]).compare(&t(&[-0.0, 0.0, 0.0]), floor);
        assert!(c.within(0.0), "{c}");
        assert!(c.worst.is_none());
    }
    // A zero against a nonzero value is a full relative error without a floor.
    assert_eq!(t(&[0.0]).compare(&t(&[1e-300]), NONE).max_error(), 1.0);
}

#[test]
fn denormals_are_compared_like_other_values() {
    let tiny = f64::from_bits(1); // 5e-324, the smallest denormal
    assert_eq!(t(&[tiny]).compare(&t(&[2.0 * tiny]), NONE).max_error(), 0.5);
    assert!(t(&[tiny]).compare(&t(&[tiny]), NONE).within(0.0));
    // Beside ordinary values they are noise at the tensors' scale.
    let c = t(&[1.0, tiny]).compare(&t(&[1.0, 3.0 * tiny]), SCALE);
    assert!(c.within(1e-300), "{c}");
    let f32_tiny = f64::from(f32::from_bits(1));
    let a = Tensor::from_f64(DType::F32, &[1], vec![f32_tiny]).unwrap();
    let b = Tensor::from_f64(DType::F32, &[1], vec![2.0 * f32_tiny]).unwrap();
    assert_eq!(a.compare(&b, NONE).max_error(), 0.5);
}

#[test]
fn values_near_the_largest_finite_do_not_overflow_the_error() {
    let c = t(&[f64::MAX]).compare(&t(&[-f64::MAX]), NONE);
    assert_eq!(c.max_error(), 2.0);
    assert!(c.non_finite_mismatch.is_none());
}

#[test]
fn the_worst_element_is_reported_with_both_values() {
    let a = Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, 2.1, 3.0, 4.8]).unwrap();
    let c = a.compare(&b, NONE);
    let worst = c.worst.unwrap();
    assert_eq!(worst.index, vec![1, 1]);
    assert_eq!(worst.values, (4.0, 4.8));
    assert!((worst.error - 0.8 / 4.8).abs() < 1e-15);
}

#[test]
fn different_shapes_never_match_and_say_so() {
    let a = Tensor::zeros(DType::F64, &[2, 3]);
    let b = Tensor::zeros(DType::F64, &[3, 2]);
    let c = a.compare(&b, SCALE);
    assert!(!c.within(f64::MAX));
    assert_eq!(c.to_string(), "shapes differ: [2, 3] vs [3, 2]");
}

#[test]
fn f32_and_f64_tensors_compare_by_value() {
    let a = Tensor::from_f64(DType::F32, &[2], vec![0.1, INF]).unwrap();
    let b = Tensor::from_f64(DType::F64, &[2], vec![0.1, INF]).unwrap();
    let c = a.compare(&b, NONE);
    // 0.1 rounded to f32 is off by about 1.5e-8.
    assert!(c.within(1e-7) && !c.within(1e-9), "{c}");
    assert!(a.compare(&b.cast(DType::F32), NONE).within(0.0));
}

#[test]
fn empty_and_scalar_tensors() {
    let e = Tensor::zeros(DType::F64, &[0, 4]);
    assert!(e.compare(&e, NONE).within(0.0));
    let c = Tensor::scalar(DType::F64, INF).compare(&Tensor::scalar(DType::F64, 1.0), SCALE);
    assert_eq!(c.to_string(), "non-finite mismatch at []: inf vs 1e0");
}
