//! The CPU backend against the conformance checks: gradients against finite differences, every op
//! against naive f64 loops, and parity with itself (which exercises the parity harness).

use agentmerge_backend_conformance as conformance;
use agentmerge_backend_cpu::CpuBackend;

#[test]
fn finite_differences() {
    conformance::finite_differences(&mut CpuBackend::new()).unwrap();
}

#[test]
fn forward_references() {
    conformance::forward_references(&mut CpuBackend::new()).unwrap();
}

#[test]
fn parity_with_itself() {
    conformance::parity(&mut CpuBackend::new(), &mut CpuBackend::new()).unwrap();
}
