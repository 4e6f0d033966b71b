//! Evaluation of trained models, the paper's step 5: a model as a MiniArena agent, and the
//! likelihood of expert trajectories.
//!
//! - [`response`]: an answer split into `<think>` and `<action>` (AgentLab's format);
//! - [`policy`]: [`ModelPolicy`], the model behind `agentmerge_miniarena::BatchPolicy`: the
//!   prompt `sft/build` trains on, the turns of every running episode decoded as one batch;
//! - [`eval`]: playing instances into success rates and step-error counts;
//! - [`likelihood`]: the mean log-probability of an SFT file's response tokens;
//! - [`node`]: the node kinds every backend plugin exports (`evaluate`, `likelihood`,
//!   `forgetting`), generic over the backend like the trainers.

pub mod eval;
pub mod likelihood;
pub mod node;
pub mod policy;
pub mod response;

pub use eval::{play, Evaluation};
pub use likelihood::{likelihood, ExampleLikelihood, Likelihood};
pub use node::{EvaluateNode, ForgettingNode, LikelihoodNode};
pub use policy::{AgentOptions, AnswerBudget, Decoder, LoadedModel, ModelPolicy, StepCounts};
pub use response::{parse_response, Response};
