//! Data parallelism over threads (`train.data_parallel`): two shards on two threads give the
//! gradient and the update of one pass over the batch, and the same run twice gives the same
//! weights. In a file of its own because it sets libtorch's process-wide thread count, and
//! its tests hold [`SERIAL`] because a data-parallel update lowers that count while it runs.

use std::sync::Mutex;

use agents::agent::AnyBatch;
use agents::parallel::DataParallel;
use agents::rollout::{Collector, Episodes, Lockstep};
use agents::testing::{config, tiny_policy};
use agents::{CotPolicy, Metrics};
use tch::{Kind, Tensor};

/// Held by each test: the thread count one test's update sets for a moment would change how
/// many shards another test's update takes.
static SERIAL: Mutex<()> = Mutex::new(());

const CONFIG: &str = r#"
seed = 3
[env]
name = "cycle"
length = 6
[train]
steps = 10
batch_size = 64
levels = [1, 2]
[algo]
name = "cot_supervised"
[model]
heads = 2
head_dim = 8
decoder_layers = 1
[optim]
lr = 1e-2
warmup_steps = 1
[eval]
every = 0
episodes = 10
sampled = false
"#;

fn oracle_batch(env: &envs::AnyEnv, rows: usize) -> Episodes {
    let sampler = config(CONFIG, &[]).train.sampler().unwrap();
    let mut batch = Lockstep::new(env, 0);
    Collector::new(env, &mut batch, &sampler, rows, 1, 7)
        .oracle()
        .unwrap()
}

/// The mean log-probability of every position, scaled by the shard's share of the batch,
/// so that shards add up to the whole batch's loss.
fn loss_of_rows(policy: &CotPolicy, ep: &Episodes, rows: std::ops::Range<usize>) -> f64 {
    let share = rows.len() as f64 / ep.len() as f64;
    let b = policy.teacher_batch(&ep.rows(rows));
    let model = policy.model();
    let enc = model.encode(&b.input, &b.difficulty, true);
    let heads = model.forward_chain(&enc, &b.prev, true);
    let loss = heads.logits.log_softmax(-1, Kind::Float).mean(Kind::Float) * share;
    loss.backward();
    loss.double_value(&[])
}

/// Each parameter's gradient, `None` for those the loss does not reach.
fn grads(policy: &CotPolicy) -> Vec<(String, Option<Tensor>)> {
    let mut g: Vec<_> = policy
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, v)| {
            let g = v.grad();
            (n, g.defined().then(|| g.copy()))
        })
        .collect();
    g.sort_by(|a, b| a.0.cmp(&b.0));
    g
}

#[test]
fn two_shards_on_two_threads_sum_to_the_batch_gradient() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let env = config(CONFIG, &[]).env.build().unwrap();
    let ep = oracle_batch(&env, 64);
    let n = ep.len();

    let mut whole = tiny_policy(&env, 1, 5);
    let one = DataParallel::new(false)
        .run(&mut whole, n, 1, |p, rows| Ok(loss_of_rows(p, &ep, rows)))
        .unwrap();
    assert_eq!(one.len(), 1);

    let mut split = tiny_policy(&env, 1, 5);
    let threads = Mutex::new(Vec::new());
    let mut dp = DataParallel::new(true);
    assert_eq!(dp.shards(&split, n), 2);
    for _ in 0..2 {
        // Twice: the second run reuses the replica, whose gradients must start from zero.
        for (_, mut v) in split.var_store().variables() {
            v.zero_grad();
        }
        threads.lock().unwrap().clear();
        let parts = dp
            .run(&mut split, n, 1, |p, rows| {
                threads.lock().unwrap().push(std::thread::current().id());
                Ok(loss_of_rows(p, &ep, rows))
            })
            .unwrap();
        assert_eq!(parts.len(), 2);
        let t = threads.lock().unwrap().clone();
        assert_eq!(t.len(), 2);
        assert_ne!(t[0], t[1], "the shards ran on one thread");
        assert!((parts.iter().sum::<f64>() - one[0]).abs() < 1e-5);
        let (a, b) = (grads(&whole), grads(&split));
        assert!(a.iter().filter(|g| g.1.is_some()).count() > 5);
        for ((name, a), (_, b)) in a.iter().zip(b.iter()) {
            match (a, b) {
                (Some(a), Some(b)) => {
                    assert!(a.allclose(b, 1e-5, 1e-7, false), "{name}: {a:?} vs {b:?}")
                }
                (None, None) => {}
                _ => panic!("{name}: a gradient on one side only"),
            }
        }
    }
    // The thread count the caller set is restored.
    assert_eq!(tch::get_num_threads(), 2);
}

fn train(data_parallel: bool, algo: &[&str]) -> (Vec<(String, Tensor)>, Vec<Metrics>) {
    let mut sets = vec![format!("train.data_parallel={data_parallel}")];
    sets.extend(algo.iter().map(|s| s.to_string()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let cfg = config(CONFIG, &sets);
    let env = cfg.env.build().unwrap();
    let ep = oracle_batch(&env, 64);
    let mut agent = agents::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
    let metrics = (0..3)
        .map(|_| agent.update(AnyBatch::new(ep.clone())).unwrap())
        .collect();
    // The shards and the optimizer step run on one libtorch thread each; the caller's
    // thread count is back afterwards.
    assert_eq!(tch::get_num_threads(), 2);
    (agent.state(), metrics)
}

#[test]
fn supervised_agents_update_alike_with_and_without_shards_and_repeat_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    for algo in [
        vec!["algo.name=\"cot_supervised\""],
        vec!["algo.name=\"supervised\""],
    ] {
        let (plain, m_plain) = train(false, &algo);
        let (split, m_split) = train(true, &algo);
        let (again, _) = train(true, &algo);
        for (a, b) in m_plain.iter().zip(&m_split) {
            let (la, lb) = (a.get("loss").unwrap(), b.get("loss").unwrap());
            assert!(
                (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
                "{algo:?}: {la} vs {lb}"
            );
        }
        for (((name, a), (_, b)), (_, c)) in plain.iter().zip(&split).zip(&again) {
            if name.starts_with("optim/step") {
                continue;
            }
            let (a, b) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
            assert!(a.allclose(&b, 1e-4, 1e-5, false), "{algo:?} {name}");
            assert!(
                b.equal(&c.to_kind(Kind::Float)),
                "{algo:?} {name}: the same run twice differs"
            );
        }
    }
}

#[test]
fn profiled_shards_count_every_shards_flops_and_twice_for_backward() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let env = config(CONFIG, &[]).env.build().unwrap();
    let ep = oracle_batch(&env, 64);
    let count = |data_parallel: bool| {
        let cfg = config(CONFIG, &[&format!("train.data_parallel={data_parallel}")]);
        let mut agent = agents::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
        agents::profile::enable(tch::Device::Cpu);
        agent.update(AnyBatch::new(ep.clone())).unwrap();
        let totals = agents::profile::take();
        agents::profile::disable();
        let flops = |name: &str| {
            totals
                .iter()
                .find(|p| p.name == name)
                .map_or(0.0, |p| p.flops)
        };
        (flops("forward"), flops("backward"))
    };
    let (one_forward, one_backward) = count(false);
    let (two_forward, two_backward) = count(true);
    assert!(one_forward > 0.0);
    assert!((one_backward - 2.0 * one_forward).abs() < 1e-9 * one_forward);
    assert!((two_backward - 2.0 * two_forward).abs() < 1e-9 * two_forward);
    // The other shard's FLOPs are merged in, and it projects the memory table again: more
    // than one pass's worth, far less than two.
    assert!(
        two_forward > one_forward && two_forward < 1.5 * one_forward,
        "{two_forward} vs {one_forward}"
    );
}
