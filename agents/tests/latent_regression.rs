//! The latent-factor regression example fits `y = |x|` clearly better than a plain linear
//! model.

#[allow(dead_code)]
#[path = "../examples/latent_regression.rs"]
mod latent_regression;

#[test]
fn sampled_factor_beats_the_linear_model() {
    tch::set_num_threads(1);
    for seed in [0, 1] {
        let (linear, factor) = latent_regression::train(seed).unwrap();
        println!("seed {seed}: linear MSE {linear:.5}, factor MSE {factor:.5}");
        // The best line is the constant 0.5 (MSE 1/12); the best line-plus-jump ~0.035.
        assert!((linear - 1.0 / 12.0).abs() < 0.01, "linear MSE {linear}");
        assert!(
            factor < 0.6 * linear,
            "factor MSE {factor} vs linear {linear}"
        );
    }
}

#[test]
fn same_seed_same_result() {
    tch::set_num_threads(1);
    let s = latent_regression::Settings {
        steps: 50,
        ..Default::default()
    };
    let a = latent_regression::train_with(3, &s).unwrap();
    let b = latent_regression::train_with(3, &s).unwrap();
    assert_eq!(a, b);
}
