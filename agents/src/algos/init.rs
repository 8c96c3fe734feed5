//! `algo.init`: warm-starting an agent's policy from another run's weights (used by
//! `reinforce` and `expert_iteration`).

use std::path::Path;

use crate::agent::AgentError;
use crate::checkpoint;
use crate::policy::CotPolicy;

/// A run's `algo.init`: a run directory or checkpoint file whose model parameters initialise
/// the policy before the first update of a fresh run (`expert_iteration` and `reinforce`).
///
/// Loaded at the first update rather than at construction, so that evaluating or resuming
/// the run never needs the init run to be there: its own checkpoints hold the weights, and
/// [`Agent::load_state`](crate::agent::Agent::load_state) cancels the pending init.
#[derive(Debug, Clone, Default)]
pub struct InitFrom {
    path: String,
    pending: bool,
}

impl InitFrom {
    /// The init from `path` (empty: none).
    pub(crate) fn new(path: &str) -> Self {
        InitFrom {
            path: path.to_string(),
            pending: !path.is_empty(),
        }
    }

    /// The run's own state was loaded: nothing to initialise.
    pub(crate) fn cancel(&mut self) {
        self.pending = false;
    }

    /// Copies the checkpoint's model parameters into `policies`, once, when pending and no
    /// update was done yet (`steps == 0`). A missing or unreadable checkpoint, or one whose
    /// model does not fit `[model]` (other names, shapes or dtypes), is an error naming
    /// `algo.init`.
    pub(crate) fn apply(
        &mut self,
        steps: u64,
        policies: &mut [&mut CotPolicy],
    ) -> Result<(), AgentError> {
        if !std::mem::take(&mut self.pending) || steps > 0 {
            return Ok(());
        }
        let init = &self.path;
        let path = Path::new(init);
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| AgentError::Init {
            path: init.clone(),
            source,
        };
        if !path.exists() && !path.with_extension("json").exists() {
            return Err(failed("no such run directory or checkpoint file".into()));
        }
        let loaded = checkpoint::load(path).map_err(|e| failed(Box::new(e)))?;
        for p in policies.iter_mut() {
            p.load_params(&loaded.tensors)
                .map_err(|e| failed(format!("the saved model does not fit [model]: {e}").into()))?;
        }
        Ok(())
    }
}
