//! The derived graphs of whole models: finite-difference checks of J v and the gradient for every
//! `ir/` model, G v against an explicitly built Jᵀ H J, symmetry and positivity of G, the linear
//! least-squares form, the prepare/apply split, and the linearity of the apply graph.

use crate::common;

use common::{
    RELATIVE_FLOOR, assert_close, assert_close_to_explicit, axpy, batch_for, direction_like, dot,
    explicit_gv, flatten, ir_models, rel_err, small_net,
};
use sgn::codegen::BackendKind;
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::{ArgRole, BinaryOp, DType, Op, Tensor, UnaryOp};
use sgn::ir::{Conv, Elementwise, Reduce, ReduceKind};
use sgn::{CompileOptions, CompiledModel, Model};

const F: DType = DType::F64;

fn compile_f64(model: &Model) -> CompiledModel {
    model
        .compile(
            &CompileOptions::default()
                .with_dtype(F)
                .with_backend(BackendKind::Jit),
        )
        .unwrap()
}

fn params_f64(model: &Model, seed: u64) -> TensorMap {
    init_params(&model.params, seed)
        .unwrap()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone().cast(F)))
        .collect()
}

/// Perturbs the biases too (they start at zero, where some models are special).
fn jiggle(params: &TensorMap) -> TensorMap {
    axpy(params, 0.1, &direction_like(params, 99))
}

#[test]
fn jvp_and_gradient_match_finite_differences_on_every_model() {
    for (name, model) in ir_models() {
        let compiled = compile_f64(&model);
        let params = jiggle(&params_f64(&model, 1));
        let batch = batch_for(&model, F, 3, 5);
        let v = direction_like(&params, 3);
        let h = 1e-6;
        let (plus, minus) = (axpy(&params, h, &v), axpy(&params, -h, &v));

        let (_, jv) = compiled.jvp(&params, &batch, &v).unwrap();
        let (z_plus, l_plus) = compiled.forward(&plus, &batch).unwrap();
        let (z_minus, l_minus) = compiled.forward(&minus, &batch).unwrap();
        let fd: Vec<f64> = z_plus
            .to_f64_vec()
            .iter()
            .zip(z_minus.to_f64_vec())
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect();
        let fd = Tensor::from_f64(F, jv.shape(), fd).unwrap();
        assert_close(
            &format!("{name}: J v vs finite differences"),
            &jv,
            &fd,
            RELATIVE_FLOOR,
            1e-6,
        );

        let (_, grad) = compiled.loss_and_grad(&params, &batch).unwrap();
        let directional = dot(&grad, &v);
        let fd = (l_plus - l_minus) / (2.0 * h);
        let err = rel_err(directional, fd);
        assert!(
            err <= 1e-6,
            "{name}: gᵀv = {directional} vs finite differences {fd}: {err:e}"
        );
    }
}

#[test]
fn gv_equals_explicit_jt_h_j_on_small_nets() {
    for (loss, act, out) in [
        ("softmax_cross_entropy", "tanh", 3),
        ("mse", "sigmoid", 2),
        ("sigmoid_cross_entropy", "relu", 2),
    ] {
        let model = small_net(act, loss, out);
        let compiled = compile_f64(&model);
        let params = params_f64(&model, 4);
        let batch = batch_for(&model, F, 4, 2);
        let v = direction_like(&params, 8);
        let expected = explicit_gv(&compiled, loss, &params, &batch, &v);
        let got = flatten(&compiled.gv(&params, &batch, &v).unwrap());
        assert_close_to_explicit(&format!("{loss}/{act}"), &got, &expected);
    }
}

#[test]
fn g_is_symmetric_and_positive_semidefinite() {
    for (name, model) in ir_models().into_iter().filter(|(n, _)| n != "mlp_tanh_800") {
        let compiled = compile_f64(&model);
        let params = jiggle(&params_f64(&model, 2));
        let batch = batch_for(&model, F, 5, 1);
        let op = compiled.gv_operator(&params, &batch).unwrap();
        let (v, w) = (direction_like(&params, 1), direction_like(&params, 2));
        let (gv, gw) = (op.apply(&v).unwrap(), op.apply(&w).unwrap());
        let (wgv, vgw) = (dot(&w, &gv), dot(&v, &gw));
        assert!(
            rel_err(wgv, vgw) <= 1e-10,
            "{name}: wᵀGv = {wgv} but vᵀGw = {vgw}"
        );
        for d in [&v, &w] {
            let curvature = dot(d, &op.apply(d).unwrap());
            assert!(curvature >= 0.0, "{name}: vᵀGv = {curvature} < 0");
        }
    }
}

#[test]
fn linear_least_squares_has_gv_equal_to_two_over_n_xt_x_v() {
    let model = Model::parse(
        "model linear\ninput x: f64[B, 4]\ntarget y: f64[B, 3]\nparam w: f64[4, 3]\n\
         output z = x @ w\nloss mse(z, y)\n",
    )
    .unwrap();
    let compiled = compile_f64(&model);
    let params = params_f64(&model, 0);
    let batch = batch_for(&model, F, 6, 0);
    let v = direction_like(&params, 5);
    let gv = compiled.gv(&params, &batch, &v).unwrap();
    let x = batch.get("x").unwrap().to_f64();
    let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
    let vw = v
        .get("w")
        .unwrap()
        .to_f64()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let n = (6 * 3) as f64;
    let expected = x.t().dot(&x).dot(&vw) * (2.0 / n);
    let got = Tensor::F64(gv.get("w").unwrap().to_f64());
    let expected = Tensor::F64(expected.into_dyn());
    assert_close("Gv vs (2/N) XᵀX v", &got, &expected, RELATIVE_FLOOR, 1e-12);
}

#[test]
fn one_shot_gv_equals_prepare_then_apply_bit_for_bit() {
    for (name, model) in ir_models() {
        for dtype in [DType::F32, DType::F64] {
            let compiled = model
                .compile(
                    &CompileOptions::default()
                        .with_dtype(dtype)
                        .with_backend(BackendKind::Interpreter),
                )
                .unwrap();
            let params: TensorMap = jiggle(&params_f64(&model, 3))
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone().cast(dtype)))
                .collect();
            let batch = batch_for(&model, dtype, 4, 3);
            let v = direction_like(&params, 4);
            let one_shot = compiled.gv(&params, &batch, &v).unwrap();
            let staged = compiled
                .gv_operator(&params, &batch)
                .unwrap()
                .apply(&v)
                .unwrap();
            assert_eq!(
                one_shot, staged,
                "{name} {dtype}: one-shot and staged Gv differ"
            );
        }
    }
}

/// The flat entry point the optimizers use (directions written in place, outputs reused) gives
/// the named one's values, call after call, and rejects a vector of the wrong length.
#[test]
fn flat_gv_apply_equals_the_named_one_on_every_call() {
    for (name, model) in ir_models() {
        for backend in [BackendKind::Interpreter, BackendKind::Jit] {
            let compiled = model
                .compile(&CompileOptions::default().with_backend(backend))
                .unwrap();
            let params = init_params(&model.params, 5).unwrap();
            let batch = batch_for(&model, DType::F32, 6, 5);
            let layout = compiled.layout();
            let op = compiled.gv_operator(&params, &batch).unwrap();
            // Stale contents of the reused buffer must not survive a call.
            let mut flat = vec![f64::NAN; 3];
            for seed in [1, 2, 3] {
                let v = direction_like(&params, seed);
                let named = layout.flatten(&op.apply(&v).unwrap()).unwrap();
                op.apply_flat(&layout.flatten(&v).unwrap(), &mut flat)
                    .unwrap();
                assert_eq!(flat, named, "{name} {backend:?} direction {seed}");
            }
            let short = vec![0.0; layout.len() - 1];
            let err = op.apply_flat(&short, &mut flat).unwrap_err().to_string();
            assert!(
                err.contains("does not match the parameters"),
                "{name}: {err}"
            );
        }
    }
}

#[test]
fn gv_apply_is_linear_in_v_with_no_nonlinear_primal_op() {
    for (name, model) in ir_models() {
        let compiled = compile_f64(&model);
        let apply = &compiled.graphs.gv_apply;
        let v: Vec<_> = apply
            .args()
            .iter()
            .filter(|a| a.role == ArgRole::Direction)
            .map(|a| a.node)
            .collect();
        assert!(!v.is_empty());
        // Residuals, directions, and the batch's tensors it reads as they are: gv-prepare does
        // not pass those through (a copy of the batch at every step).
        assert!(
            apply.args().iter().all(|a| matches!(
                a.role,
                ArgRole::Direction | ArgRole::Residual | ArgRole::Input | ArgRole::Target
            )),
            "{name}"
        );
        let prepare = &compiled.graphs.gv_prepare;
        let data: Vec<_> = (prepare.args().iter())
            .filter(|a| matches!(a.role, ArgRole::Input | ArgRole::Target))
            .map(|a| a.node)
            .collect();
        assert!(
            prepare.outputs().iter().all(|o| !data.contains(&o.node)),
            "{name}: gv-prepare passes a batch tensor through"
        );
        let on_v = apply.descendants(&v, apply.nodes().len());
        for (i, node) in apply.nodes().iter().enumerate() {
            let nonlinear = matches!(
                node.op,
                Op::Elementwise(Elementwise::Unary(
                    UnaryOp::Exp
                        | UnaryOp::Log
                        | UnaryOp::Tanh
                        | UnaryOp::Sigmoid
                        | UnaryOp::Softplus
                        | UnaryOp::Relu
                        | UnaryOp::Sqrt
                        | UnaryOp::Abs
                        | UnaryOp::Sign
                        | UnaryOp::Step
                        | UnaryOp::Recip
                )) | Op::Elementwise(Elementwise::Pow(_))
                    | Op::Reduce(Reduce {
                        kind: ReduceKind::Max,
                        ..
                    })
                    | Op::Elementwise(Elementwise::Binary(BinaryOp::Max | BinaryOp::Min))
                    | Op::Conv(Conv::MaxPool2d { .. } | Conv::MaxPool2dArgmax { .. })
            );
            assert!(
                !nonlinear,
                "{name}: gv-apply computes {} (node {i})",
                node.op.name()
            );
            if on_v[i] {
                let operands_on_v = node.inputs.iter().filter(|x| on_v[x.index()]).count();
                match node.op {
                    Op::Elementwise(Elementwise::Binary(BinaryOp::Mul))
                    | Op::MatMul(_)
                    | Op::Conv(
                        Conv::Conv2d { .. }
                        | Conv::Conv2dTranspose { .. }
                        | Conv::Conv2dCorrelate { .. },
                    ) => {
                        assert_eq!(
                            operands_on_v, 1,
                            "{name}: node {i} multiplies two v-dependent values"
                        )
                    }
                    Op::Elementwise(Elementwise::Binary(BinaryOp::Div)) => assert!(
                        !on_v[node.inputs[1].index()],
                        "{name}: node {i} divides by a v-dependent value"
                    ),
                    // Where the maxima are is a primal value (a residual), never on v.
                    Op::Conv(Conv::MaxPool2dSelect { .. } | Conv::MaxPool2dScatter { .. }) => {
                        assert!(
                            !on_v[node.inputs[1].index()],
                            "{name}: node {i} pools at the maxima of a v-dependent value"
                        )
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn loss_hessian_of_softmax_cross_entropy_has_the_cheap_form() {
    // Through G = Jᵀ H J with J = I (z is a parameter): G u = (p ⊙ u − p (pᵀu)) / B.
    let model = Model::parse(
        "model direct\ninput x: f64[3, 1]\ntarget y: f64[3, 4]\nparam z0: f64[3, 4]\n\
         output z = z0 + 0 * x\nloss softmax_cross_entropy(z, y)\n",
    )
    .unwrap();
    let compiled = compile_f64(&model);
    let params = jiggle(&params_f64(&model, 9));
    let batch = batch_for(&model, F, 3, 4);
    let u = direction_like(&params, 6);
    let gu = compiled.gv(&params, &batch, &u).unwrap();
    let z = params.get("z0").unwrap().to_f64_vec();
    let uv = u.get("z0").unwrap().to_f64_vec();
    let mut expected = vec![0.0; 12];
    for r in 0..3 {
        let row = &z[r * 4..r * 4 + 4];
        let s: f64 = row.iter().map(|x| x.exp()).sum();
        let p: Vec<f64> = row.iter().map(|x| x.exp() / s).collect();
        let pu: f64 = (0..4).map(|j| p[j] * uv[r * 4 + j]).sum();
        for j in 0..4 {
            expected[r * 4 + j] = (p[j] * uv[r * 4 + j] - p[j] * pu) / 3.0;
        }
    }
    let got = gu.get("z0").unwrap().to_f64_vec();
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 1e-12, "{got:?} vs {expected:?}");
    }
}
