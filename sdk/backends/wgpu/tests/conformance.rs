//! The wgpu backend against the conformance checks, on whatever adapter the machine has (in CI,
//! Mesa's lavapipe): gradients against finite differences, every op against naive f64 loops,
//! and every op against the CPU backend (the parity tolerances of the backend issue: 1e-4 for
//! values, 1e-3 for gradients).

use agentmerge_backend_conformance as conformance;
use agentmerge_backend_cpu::CpuBackend;
use agentmerge_backend_wgpu::WgpuBackend;

fn backend() -> WgpuBackend {
    WgpuBackend::new().unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn gradients_match_finite_differences() {
    conformance::finite_differences(&mut backend()).unwrap();
}

#[test]
fn every_op_matches_naive_references() {
    conformance::forward_references_with(&mut backend(), conformance::Sums::F32).unwrap();
}

#[test]
fn every_op_matches_the_cpu_backend() {
    conformance::parity(&mut backend(), &mut CpuBackend::new()).unwrap();
}

#[test]
fn ops_are_deterministic() {
    let a = conformance::transcript(&mut backend(), conformance::Shapes::Large).unwrap();
    let b = conformance::transcript(&mut backend(), conformance::Shapes::Large).unwrap();
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "{name} differs between two runs");
    }
}
