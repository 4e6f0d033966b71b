//! Choosing AgentMerge's λ for one learning rate, on the validation split only.
//!
//! The rule: the highest validation success rate (pooled over every validation task, final
//! checkpoint); ties go to the higher teacher-forced exact step accuracy (a λ without one
//! loses the tie), then to the smaller λ. When no λ has a validation result, λ = 1 is taken
//! if it was swept, else the smallest, and the report says it was not validated.

use std::cmp::Ordering;

use crate::labels::Label;

/// One λ swept for a learning rate, with its validation result when there is one.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub lambda: Label,
    /// Validation success rate (final checkpoint, all tasks pooled); `None`: not validated.
    pub rate: Option<f64>,
    /// Validation exact step accuracy, if measured.
    pub exact: Option<f64>,
}

/// The λ chosen for one learning rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Index into the candidates.
    pub index: usize,
    /// True when chosen on validation results; false for the fallback (λ = 1, else smallest).
    pub validated: bool,
}

/// Chooses among `candidates` (see the module doc). `None` only when there are none.
pub fn choose(candidates: &[Candidate]) -> Option<Choice> {
    let validated = candidates.iter().enumerate().filter(|(_, c)| c.rate.is_some_and(f64::is_finite));
    // `max_by` keeps the last of equal elements, so "better" must be strictly ordered.
    let best = validated.max_by(|(_, a), (_, b)| better(a, b));
    if let Some((index, _)) = best {
        return Some(Choice { index, validated: true });
    }
    let one = candidates.iter().position(|c| c.lambda.value == Some(1.0));
    let smallest = candidates.iter().enumerate().min_by(|(_, a), (_, b)| a.lambda.order(&b.lambda)).map(|(i, _)| i);
    one.or(smallest).map(|index| Choice { index, validated: false })
}

/// `Greater` when `a` should be chosen over `b`.
fn better(a: &Candidate, b: &Candidate) -> Ordering {
    let rate = |c: &Candidate| c.rate.unwrap_or(f64::NEG_INFINITY);
    let exact = |c: &Candidate| c.exact.filter(|x| x.is_finite()).unwrap_or(f64::NEG_INFINITY);
    rate(a)
        .total_cmp(&rate(b))
        .then(exact(a).total_cmp(&exact(b)))
        // The smaller λ wins: reversed.
        .then(b.lambda.order(&a.lambda))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(lambda: &str, rate: Option<f64>, exact: Option<f64>) -> Candidate {
        Candidate { lambda: Label::new(lambda), rate, exact }
    }

    #[test]
    fn highest_validation_success_wins() {
        let c = [cand("0.5", Some(0.20), None), cand("1.0", Some(0.35), None), cand("1.5", Some(0.30), None)];
        assert_eq!(choose(&c), Some(Choice { index: 1, validated: true }));
    }

    #[test]
    fn ties_go_to_exact_then_to_the_smaller_lambda() {
        let c = [cand("1.5", Some(0.25), Some(0.6)), cand("0.5", Some(0.25), Some(0.7)), cand("1.0", Some(0.10), Some(0.9))];
        assert_eq!(choose(&c).unwrap().index, 1);
        let c = [cand("1.5", Some(0.25), Some(0.7)), cand("0.5", Some(0.25), Some(0.7)), cand("0.75", Some(0.25), None)];
        assert_eq!(choose(&c).unwrap().index, 1);
        let c = [cand("1.5", Some(0.0), None), cand("0.25", Some(0.0), None)];
        assert_eq!(choose(&c).unwrap().index, 1);
    }

    #[test]
    fn without_validation_lambda_one_else_the_smallest() {
        let c = [cand("0.5", None, None), cand("1.0", None, None), cand("0.25", None, None)];
        assert_eq!(choose(&c), Some(Choice { index: 1, validated: false }));
        let c = [cand("0.5", None, None), cand("0.25", None, None)];
        assert_eq!(choose(&c), Some(Choice { index: 1, validated: false }));
        assert_eq!(choose(&[]), None);
        // A validated λ beats unvalidated ones whatever their values.
        let c = [cand("1.0", None, None), cand("2.0", Some(0.0), None)];
        assert_eq!(choose(&c), Some(Choice { index: 1, validated: true }));
    }
}
