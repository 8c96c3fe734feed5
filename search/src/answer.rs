//! What counts as "the answer" of a chain, for majority voting (self-consistency).

/// Extracts the answer of a finished chain, so that chains reaching the same answer by
/// different routes vote together. Implemented by [`LastAction`], [`WholeChain`],
/// [`AfterAction`] and by any `Fn(&[usize], &E) -> Vec<usize>`.
pub trait Answer<E> {
    /// The answer of the chain `actions`, whose final state is `state`.
    fn answer(&self, actions: &[usize], state: &E) -> Vec<usize>;
}

/// The last action is the answer (single-token answers; the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastAction;

impl<E> Answer<E> for LastAction {
    fn answer(&self, actions: &[usize], _state: &E) -> Vec<usize> {
        actions.last().map(|&a| vec![a]).unwrap_or_default()
    }
}

/// The whole action sequence is the answer (votes count identical chains).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WholeChain;

impl<E> Answer<E> for WholeChain {
    fn answer(&self, actions: &[usize], _state: &E) -> Vec<usize> {
        actions.to_vec()
    }
}

/// The actions after the first occurrence of a marker action (for `CotEnv`: the tokens after
/// `ANSWER`, i.e. `AfterAction(env.answer_action())`); empty if the marker never occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterAction(pub usize);

impl<E> Answer<E> for AfterAction {
    fn answer(&self, actions: &[usize], _state: &E) -> Vec<usize> {
        match actions.iter().position(|&a| a == self.0) {
            Some(i) => actions[i + 1..].to_vec(),
            None => Vec::new(),
        }
    }
}

impl<E, F: Fn(&[usize], &E) -> Vec<usize>> Answer<E> for F {
    fn answer(&self, actions: &[usize], state: &E) -> Vec<usize> {
        self(actions, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extractors_pick_the_right_tokens() {
        let chain = [3, 1, 9, 4, 2];
        assert_eq!(Answer::<()>::answer(&LastAction, &chain, &()), vec![2]);
        assert_eq!(
            Answer::<()>::answer(&WholeChain, &chain, &()),
            chain.to_vec()
        );
        assert_eq!(
            Answer::<()>::answer(&AfterAction(9), &chain, &()),
            vec![4, 2]
        );
        assert!(Answer::<()>::answer(&AfterAction(7), &chain, &()).is_empty());
        let f = |a: &[usize], _: &()| vec![a.len()];
        assert_eq!(f.answer(&chain, &()), vec![5]);
        assert!(Answer::<()>::answer(&LastAction, &[], &()).is_empty());
    }
}
