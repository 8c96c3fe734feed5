//! The searchers a config or `search compare` can name. The built-in ones (greedy, vote,
//! beam, mcts, gumbel) register exactly as a user's searcher does:
//! `register_searcher::<MySearcher>()` with `MySearcher: `[`BuildSearcher`]. After that,
//! `factorexe search compare --algos my_searcher` compares it, and expert iteration plays
//! with it (`[algo.settings] searcher = { name = "my_searcher", ... }`) when it plays one
//! action per search.
//!
//! A [`SearchSpec`] (a name and a settings table) is the one way both name a searcher. Its
//! settings are checked by the searcher's own settings type (unknown keys are errors naming
//! the valid ones) and completed with its defaults, which depend on the [`SearchPurpose`]:
//! training-time search explores (Gumbel noise, Dirichlet noise, sampled actions),
//! test-time search does not.
//!
//! # Example
//!
//! ```
//! use agents::searchers::{SearchContext, SearchPurpose, SearchSpec};
//! use envs::{Env, EnvRng};
//! use rand::SeedableRng;
//! use search::UniformEvaluator;
//!
//! let mut env = envs::registry::make("cycle", &envs::EnvParams::new())?;
//! env.reset(&mut EnvRng::seed_from_u64(0), 2)?;
//! let spec = SearchSpec::parse("gumbel", SearchPurpose::Evaluate)?;
//! assert_eq!(spec.settings["gumbel_scale"].as_float(), Some(0.0)); // no noise at test time
//! let roots = vec![env];
//! let ctx = SearchContext { spec: roots[0].spec(), budget: 8, bounded_values: true };
//! let mut searcher = spec.build(&ctx)?;
//! let budget = spec.search_budget(&ctx)?;
//! let mut rng = EnvRng::seed_from_u64(1);
//! let out = searcher.search(&roots, &mut UniformEvaluator::new(0.5), budget, &mut rng)?;
//! assert!(out[0].evals <= 8);
//! // The same searcher, named in a TOML table as expert iteration's config names it:
//! let train: SearchSpec = toml::from_str::<toml::Table>("s = { name = \"gumbel\" }")?["s"]
//!     .clone()
//!     .try_into()?;
//! assert_eq!(train.resolved(SearchPurpose::Train)?.settings["gumbel_scale"].as_float(), Some(1.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::{LazyLock, RwLock};

use envs::{AnyEnv, EnvSpec};
use search::{
    AfterAction, Beam, BeamConfig, BeamScore, EarlyStop, Greedy, GumbelConfig, GumbelMuZero, Mcts,
    MctsConfig, MixValue, QTransform, Sample, SampleConfig, SampleSelect, SearchError, Searcher,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AgentError;

/// The largest nominal budget a searcher is built for: beyond it, trees, beams and sample
/// sets would not fit in memory.
pub const MAX_BUDGET: usize = 1 << 20;

/// What a search is for; a searcher's settings default by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPurpose {
    /// Test-time search (`search compare`): no exploration noise, the best action.
    Evaluate,
    /// Training-time search (expert iteration): exploration on.
    Train,
}

/// How a searcher plays an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plays {
    /// One search per action: the first action of each search's output is played, and its
    /// improved policy ([`search::SearchOutput::policy`]) can be a training target.
    EachAction,
    /// One search plays the whole chain: its output's actions are played to the end.
    WholeChain,
}

/// What the caller of a search fixes, the same for every searcher.
#[derive(Debug, Clone, Copy)]
pub struct SearchContext<'a> {
    /// The searched env's spec (action count, episode length).
    pub spec: &'a EnvSpec,
    /// The nominal budget `k`: about `k` times greedy decoding's evaluator calls. Each
    /// searcher says what it makes of it ([`BuildSearcher::search_budget`]).
    pub budget: usize,
    /// Values are probabilities in `[0, 1]` (both of the policy's value sources are), so a
    /// searcher may normalize by these bounds instead of by the values it has seen.
    pub bounded_values: bool,
}

/// A searcher that configs and the CLI can name. Implement it for a searcher type (or a
/// marker type) and register it with [`register_searcher`].
pub trait BuildSearcher: 'static {
    /// The name configs and `--algos` use.
    const NAME: &'static str;
    /// One line about it, for listings.
    const SUMMARY: &'static str;
    /// How it plays an episode.
    const PLAYS: Plays;
    /// Whether the budget changes what it does (greedy's does not: it runs once).
    const USES_BUDGET: bool = true;
    /// Its settings; keys missing from a spec take [`defaults`](Self::defaults).
    type Settings: Serialize + DeserializeOwned + fmt::Debug + 'static;

    /// The settings a spec starts from.
    fn defaults(purpose: SearchPurpose) -> Self::Settings;

    /// Checks the settings, naming the key; the default accepts everything.
    fn validate(settings: &Self::Settings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }

    /// A searcher for `ctx.budget`.
    fn build(
        ctx: &SearchContext<'_>,
        settings: &Self::Settings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError>;

    /// The budget handed to [`Searcher::search`] (evaluator calls per root, per search) for
    /// the nominal budget `ctx.budget`; the default is `ctx.budget` itself.
    fn search_budget(ctx: &SearchContext<'_>, settings: &Self::Settings) -> usize {
        let _ = settings;
        ctx.budget
    }

    /// Whether, playing one action per search, a decision may also spend what the earlier
    /// decisions of its episode left unspent ([`BudgetPool`]); the default is no.
    fn carries_unspent(settings: &Self::Settings) -> bool {
        let _ = settings;
        false
    }
}

/// The budgets of the decisions of a batch of episodes played one action per search. Each
/// decision may spend the per-decision budget; with `carry`, also what the earlier decisions
/// of its episode left unspent (a per-episode pool, so that decisions a searcher settles early
/// leave their calls to the uncertain ones). A decision's budget is at most [`MAX_BUDGET`].
#[derive(Debug, Clone)]
pub struct BudgetPool {
    per_decision: usize,
    carry: bool,
    banked: Vec<usize>,
}

impl BudgetPool {
    /// A pool for `episodes` episodes.
    pub fn new(episodes: usize, per_decision: usize, carry: bool) -> BudgetPool {
        BudgetPool {
            per_decision,
            carry,
            banked: vec![0; episodes],
        }
    }

    /// The budget of episode `i`'s next decision: the per-decision budget and, up to
    /// [`MAX_BUDGET`] in all, what is banked.
    pub fn budget(&self, i: usize) -> usize {
        let room = MAX_BUDGET.saturating_sub(self.per_decision);
        self.per_decision + self.banked[i].min(room)
    }

    /// Records that episode `i`'s decision given `budget` spent `evals` calls.
    pub fn spent(&mut self, i: usize, budget: usize, evals: usize) {
        if self.carry {
            self.banked[i] = budget.saturating_sub(evals);
        }
    }
}

/// A searcher as configs and the CLI get it: any env, type erased.
pub type AnySearcher = Box<dyn Searcher<AnyEnv>>;

/// A registered searcher: its name, properties, and how to check its settings and build it.
#[derive(Clone, Copy)]
pub struct SearcherEntry {
    /// The name configs use.
    pub name: &'static str,
    /// One line about it.
    pub summary: &'static str,
    /// How it plays an episode.
    pub plays: Plays,
    /// Whether the budget changes what it does.
    pub uses_budget: bool,
    resolve: fn(&toml::Table, SearchPurpose) -> Result<toml::Table, String>,
    build: fn(&SearchContext<'_>, &toml::Table) -> Result<AnySearcher, AgentError>,
    search_budget: fn(&SearchContext<'_>, &toml::Table) -> Result<usize, AgentError>,
    carries_unspent: fn(&toml::Table) -> Result<bool, AgentError>,
}

impl fmt::Debug for SearcherEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearcherEntry")
            .field("name", &self.name)
            .field("plays", &self.plays)
            .finish()
    }
}

impl SearcherEntry {
    /// The entry of `S`.
    pub fn of<S: BuildSearcher>() -> SearcherEntry {
        SearcherEntry {
            name: S::NAME,
            summary: S::SUMMARY,
            plays: S::PLAYS,
            uses_budget: S::USES_BUDGET,
            resolve: resolve_settings::<S>,
            build: build_searcher::<S>,
            search_budget: search_budget_of::<S>,
            carries_unspent: carries_unspent_of::<S>,
        }
    }

    /// The default settings for `purpose`, as a table (for listings).
    pub fn defaults(&self, purpose: SearchPurpose) -> Result<toml::Table, String> {
        (self.resolve)(&toml::Table::new(), purpose)
    }
}

fn parse_settings<S: BuildSearcher>(table: &toml::Table) -> Result<S::Settings, String> {
    let settings: S::Settings = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| format!("searcher `{}`: {}", S::NAME, e.message()))?;
    S::validate(&settings).map_err(|e| format!("searcher `{}`: {e}", S::NAME))?;
    Ok(settings)
}

fn resolve_settings<S: BuildSearcher>(
    table: &toml::Table,
    purpose: SearchPurpose,
) -> Result<toml::Table, String> {
    let mut full = toml::Table::try_from(S::defaults(purpose))
        .map_err(|e| format!("searcher `{}`: {e}", S::NAME))?;
    let valid: Vec<String> = full.keys().cloned().collect();
    for (k, v) in table {
        if !full.contains_key(k) {
            return Err(format!(
                "searcher `{}` has no setting `{k}`; its settings are: {}",
                S::NAME,
                if valid.is_empty() {
                    "(none)".to_string()
                } else {
                    valid.join(", ")
                }
            ));
        }
        full.insert(k.clone(), v.clone());
    }
    let settings = parse_settings::<S>(&full)?;
    toml::Table::try_from(&settings).map_err(|e| format!("searcher `{}`: {e}", S::NAME))
}

fn build_searcher<S: BuildSearcher>(
    ctx: &SearchContext<'_>,
    table: &toml::Table,
) -> Result<Box<dyn Searcher<AnyEnv>>, AgentError> {
    let settings = parse_settings::<S>(table).map_err(AgentError::Config)?;
    Ok(S::build(ctx, &settings)?)
}

fn search_budget_of<S: BuildSearcher>(
    ctx: &SearchContext<'_>,
    table: &toml::Table,
) -> Result<usize, AgentError> {
    let settings = parse_settings::<S>(table).map_err(AgentError::Config)?;
    Ok(S::search_budget(ctx, &settings))
}

fn carries_unspent_of<S: BuildSearcher>(table: &toml::Table) -> Result<bool, AgentError> {
    let settings = parse_settings::<S>(table).map_err(AgentError::Config)?;
    Ok(S::carries_unspent(&settings))
}

static SEARCHERS: LazyLock<RwLock<Vec<SearcherEntry>>> = LazyLock::new(|| {
    RwLock::new(vec![
        SearcherEntry::of::<Greedy<AnyEnv>>(),
        SearcherEntry::of::<Sample<AnyEnv>>(),
        SearcherEntry::of::<Beam<AnyEnv>>(),
        SearcherEntry::of::<Mcts<AnyEnv>>(),
        SearcherEntry::of::<GumbelMuZero<AnyEnv>>(),
        SearcherEntry::of::<AnytimeMcts>(),
        SearcherEntry::of::<AnytimeGumbel>(),
    ])
});

/// Registers `S` under [`BuildSearcher::NAME`]; a name already taken is an error.
pub fn register_searcher<S: BuildSearcher>() -> Result<(), AgentError> {
    register(SearcherEntry::of::<S>())
}

/// Registers `entry`; a name already taken is an error.
pub fn register(entry: SearcherEntry) -> Result<(), AgentError> {
    let mut list = SEARCHERS.write().unwrap_or_else(|e| e.into_inner());
    if list.iter().any(|e| e.name == entry.name) {
        return Err(AgentError::Config(format!(
            "a searcher named `{}` is already registered",
            entry.name
        )));
    }
    list.push(entry);
    Ok(())
}

/// Every registered searcher, the built-in ones first.
pub fn searchers() -> Vec<SearcherEntry> {
    SEARCHERS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The searcher called `name`, or an error listing the registered names.
pub fn searcher(name: &str) -> Result<SearcherEntry, String> {
    let list = searchers();
    list.iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = list.iter().map(|e| e.name).collect();
            format!(
                "no searcher named `{name}`; registered searchers: {}",
                names.join(", ")
            )
        })
}

/// A searcher by name with its settings: what `search compare` and expert iteration are
/// given. Made by [`SearchSpec::resolve`] or [`SearchSpec::parse`], its settings are
/// complete (every default filled in) and checked.
///
/// In TOML it is a table with `name` and the settings (`{ name = "gumbel", gumbel_scale =
/// 1.0 }`); a bare name (`"gumbel"`) also reads. Reading does not check the settings: the
/// user of the spec resolves it for its purpose.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    /// The registered searcher's name.
    pub name: String,
    /// Its settings.
    pub settings: toml::Table,
}

impl SearchSpec {
    /// The spec of searcher `name` with `settings` over its defaults for `purpose`; unknown
    /// names and keys, and bad values, are errors that name them.
    pub fn resolve(
        name: &str,
        settings: &toml::Table,
        purpose: SearchPurpose,
    ) -> Result<SearchSpec, String> {
        let entry = searcher(name)?;
        Ok(SearchSpec {
            name: name.to_string(),
            settings: (entry.resolve)(settings, purpose)?,
        })
    }

    /// `name` with its default settings for `purpose`.
    pub fn parse(name: &str, purpose: SearchPurpose) -> Result<SearchSpec, String> {
        SearchSpec::resolve(name.trim(), &toml::Table::new(), purpose)
    }

    /// This spec again, checked and completed for `purpose`.
    pub fn resolved(&self, purpose: SearchPurpose) -> Result<SearchSpec, String> {
        SearchSpec::resolve(&self.name, &self.settings, purpose)
    }

    /// Sets `key` (a TOML value, e.g. `8`, `0.5`, `true`, `"text"`; anything else is read as
    /// a string) and checks the result for `purpose`.
    pub fn set(&mut self, key: &str, value: &str, purpose: SearchPurpose) -> Result<(), String> {
        let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let mut settings = self.settings.clone();
        settings.insert(key.to_string(), v);
        *self = SearchSpec::resolve(&self.name, &settings, purpose)?;
        Ok(())
    }

    /// The registry entry of this spec's searcher.
    pub fn entry(&self) -> Result<SearcherEntry, AgentError> {
        searcher(&self.name).map_err(AgentError::Config)
    }

    /// Builds the searcher for `ctx`; a budget of 0 or above [`MAX_BUDGET`] is an error.
    pub fn build(&self, ctx: &SearchContext<'_>) -> Result<Box<dyn Searcher<AnyEnv>>, AgentError> {
        if !(1..=MAX_BUDGET).contains(&ctx.budget) {
            return Err(AgentError::Config(format!(
                "searcher `{}`: budget {} is outside 1..={MAX_BUDGET}",
                self.name, ctx.budget
            )));
        }
        (self.entry()?.build)(ctx, &self.settings)
    }

    /// The budget to hand to [`Searcher::search`] for `ctx`.
    pub fn search_budget(&self, ctx: &SearchContext<'_>) -> Result<usize, AgentError> {
        (self.entry()?.search_budget)(ctx, &self.settings)
    }

    /// Whether a decision may spend what its episode's earlier decisions left unspent
    /// ([`BuildSearcher::carries_unspent`]).
    pub fn carries_unspent(&self) -> Result<bool, AgentError> {
        (self.entry()?.carries_unspent)(&self.settings)
    }
}

impl fmt::Display for SearchSpec {
    /// The name, then the settings in key order: `beam`, `vote(temperature=1.0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.settings.is_empty() {
            let parts: Vec<String> = self
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "({})", parts.join(", "))?;
        }
        Ok(())
    }
}

impl Serialize for SearchSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = toml::Table::new();
        t.insert("name".into(), toml::Value::String(self.name.clone()));
        t.extend(self.settings.clone());
        t.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SearchSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Table(toml::Table),
        }
        match Raw::deserialize(d)? {
            Raw::Name(name) => Ok(SearchSpec {
                name,
                settings: toml::Table::new(),
            }),
            Raw::Table(mut t) => match t.remove("name") {
                Some(toml::Value::String(name)) => Ok(SearchSpec { name, settings: t }),
                _ => Err(serde::de::Error::custom(
                    "a searcher is a name or a table with a `name` string and its settings",
                )),
            },
        }
    }
}

// ---- the built-in searchers ----

/// Settings of a searcher that has none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// The chain's episode length: what a whole-chain searcher needs per chain.
fn chain_steps(ctx: &SearchContext<'_>) -> usize {
    ctx.spec.max_episode_steps.max(1)
}

impl BuildSearcher for Greedy<AnyEnv> {
    const NAME: &'static str = "greedy";
    const SUMMARY: &'static str = "the policy's most likely action at every step";
    const PLAYS: Plays = Plays::WholeChain;
    const USES_BUDGET: bool = false;
    type Settings = NoSettings;

    fn defaults(_: SearchPurpose) -> NoSettings {
        NoSettings {}
    }

    fn build(
        _: &SearchContext<'_>,
        _: &NoSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        Ok(Box::new(Greedy::new()))
    }

    fn search_budget(ctx: &SearchContext<'_>, _: &NoSettings) -> usize {
        chain_steps(ctx)
    }
}

/// Settings of `vote`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteSettings {
    /// Sampling temperature, `> 0`.
    pub temperature: f32,
}

impl BuildSearcher for Sample<AnyEnv> {
    const NAME: &'static str = "vote";
    const SUMMARY: &'static str =
        "k chains sampled from the policy, majority vote over their answers (self-consistency)";
    const PLAYS: Plays = Plays::WholeChain;
    type Settings = VoteSettings;

    fn defaults(_: SearchPurpose) -> VoteSettings {
        VoteSettings { temperature: 1.0 }
    }

    fn validate(s: &VoteSettings) -> Result<(), String> {
        if !(s.temperature > 0.0 && s.temperature.is_finite()) {
            return Err(format!("temperature = {}: expected > 0", s.temperature));
        }
        Ok(())
    }

    fn build(
        ctx: &SearchContext<'_>,
        s: &VoteSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        // The chain ends with the answer marker (the last action), then the answer.
        let marker = ctx.spec.num_actions.saturating_sub(1);
        Ok(Box::new(
            Sample::new(SampleConfig {
                num_samples: ctx.budget,
                temperature: s.temperature,
                select: SampleSelect::Vote,
            })?
            .with_answer(AfterAction(marker)),
        ))
    }

    fn search_budget(ctx: &SearchContext<'_>, _: &VoteSettings) -> usize {
        ctx.budget
            .saturating_mul(chain_steps(ctx))
            .saturating_add(1)
    }
}

impl BuildSearcher for Beam<AnyEnv> {
    const NAME: &'static str = "beam";
    const SUMMARY: &'static str = "beam search of width k by log-probability";
    const PLAYS: Plays = Plays::WholeChain;
    type Settings = NoSettings;

    fn defaults(_: SearchPurpose) -> NoSettings {
        NoSettings {}
    }

    fn build(
        ctx: &SearchContext<'_>,
        _: &NoSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        Ok(Box::new(Beam::new(BeamConfig {
            width: ctx.budget,
            score: BeamScore::LogProb,
        })?))
    }

    fn search_budget(ctx: &SearchContext<'_>, _: &NoSettings) -> usize {
        ctx.budget
            .saturating_mul(chain_steps(ctx))
            .saturating_add(1)
    }
}

/// Settings of `mcts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MctsSettings {
    /// Weight of the root Dirichlet noise, in `[0, 1]` (0 at test time, 0.25 in training).
    pub dirichlet_fraction: f64,
    /// The action is drawn from visits^(1/temperature); 0 takes the most visited (0 at test
    /// time, 1 in training).
    pub temperature: f64,
    /// Anytime search: a decision stops once its most visited root child holds this share of
    /// the root's visits, after `min_simulations`; 0 (the default) spends the whole budget.
    pub stop_when_confident: f64,
    /// Simulations before a decision may stop (with `stop_when_confident`).
    pub min_simulations: usize,
    /// A decision may also spend what the earlier decisions of its episode left unspent.
    pub carry_unspent: bool,
}

impl BuildSearcher for Mcts<AnyEnv> {
    const NAME: &'static str = "mcts";
    const SUMMARY: &'static str = "AlphaZero MCTS (PUCT), k evaluator calls per action";
    const PLAYS: Plays = Plays::EachAction;
    type Settings = MctsSettings;

    fn defaults(purpose: SearchPurpose) -> MctsSettings {
        let c = match purpose {
            SearchPurpose::Evaluate => MctsConfig::evaluation(),
            SearchPurpose::Train => MctsConfig::default(),
        };
        MctsSettings {
            dirichlet_fraction: c.dirichlet_fraction.into(),
            temperature: c.temperature.into(),
            stop_when_confident: 0.0,
            min_simulations: DEFAULT_MIN_SIMULATIONS,
            carry_unspent: false,
        }
    }

    fn validate(s: &MctsSettings) -> Result<(), String> {
        validate_stop(s.stop_when_confident)?;
        if !(0.0..=1.0).contains(&s.dirichlet_fraction) {
            return Err(format!(
                "dirichlet_fraction = {}: expected a number in [0, 1]",
                s.dirichlet_fraction
            ));
        }
        if !(s.temperature.is_finite() && s.temperature >= 0.0) {
            return Err(format!(
                "temperature = {}: expected a finite number >= 0",
                s.temperature
            ));
        }
        Ok(())
    }

    fn build(
        ctx: &SearchContext<'_>,
        s: &MctsSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        Ok(Box::new(Mcts::new(MctsConfig {
            dirichlet_fraction: s.dirichlet_fraction as f32,
            temperature: s.temperature as f32,
            qtransform: if ctx.bounded_values {
                QTransform::MinMax { min: 0.0, max: 1.0 }
            } else {
                QTransform::default()
            },
            early_stop: early_stop(s.stop_when_confident, s.min_simulations),
            ..MctsConfig::default()
        })?))
    }

    fn carries_unspent(s: &MctsSettings) -> bool {
        s.carry_unspent
    }
}

/// Simulations a decision runs before anytime search may stop it, unless set.
const DEFAULT_MIN_SIMULATIONS: usize = 4;

fn validate_stop(confidence: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&confidence) {
        return Err(format!(
            "stop_when_confident = {confidence}: expected a number in [0, 1] (0: never stop early)"
        ));
    }
    Ok(())
}

fn early_stop(confidence: f64, min_simulations: usize) -> Option<EarlyStop> {
    (confidence > 0.0).then_some(EarlyStop {
        confidence: confidence as f32,
        min_simulations,
    })
}

/// Settings of `gumbel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GumbelSettings {
    /// Root actions considered by Sequential Halving, `>= 1`.
    pub max_considered: usize,
    /// Scale of the root Gumbel noise, `>= 0` (0 at test time: the search is deterministic;
    /// 1 in training).
    pub gumbel_scale: f64,
    /// Anytime search: a decision stops once the largest probability of its improved policy
    /// reaches this value, after `min_simulations`; 0 (the default) spends the whole budget.
    pub stop_when_confident: f64,
    /// Simulations before a decision may stop (with `stop_when_confident`).
    pub min_simulations: usize,
    /// A decision may also spend what the earlier decisions of its episode left unspent.
    pub carry_unspent: bool,
    /// End a decision's search where its last complete Sequential Halving round ends instead
    /// of partway through the next (true at test time: a cut round skews the final choice;
    /// false in training, as mctx does).
    pub whole_rounds: bool,
}

impl BuildSearcher for GumbelMuZero<AnyEnv> {
    const NAME: &'static str = "gumbel";
    const SUMMARY: &'static str =
        "Gumbel MuZero with Sequential Halving, k evaluator calls per action";
    const PLAYS: Plays = Plays::EachAction;
    type Settings = GumbelSettings;

    fn defaults(purpose: SearchPurpose) -> GumbelSettings {
        GumbelSettings {
            max_considered: 16,
            gumbel_scale: match purpose {
                SearchPurpose::Evaluate => 0.0,
                SearchPurpose::Train => 1.0,
            },
            stop_when_confident: 0.0,
            min_simulations: DEFAULT_MIN_SIMULATIONS,
            carry_unspent: false,
            whole_rounds: purpose == SearchPurpose::Evaluate,
        }
    }

    fn validate(s: &GumbelSettings) -> Result<(), String> {
        validate_stop(s.stop_when_confident)?;
        if s.max_considered == 0 {
            return Err("max_considered = 0: expected an integer >= 1".into());
        }
        if !(s.gumbel_scale.is_finite() && s.gumbel_scale >= 0.0) {
            return Err(format!(
                "gumbel_scale = {}: expected a finite number >= 0",
                s.gumbel_scale
            ));
        }
        Ok(())
    }

    fn build(
        ctx: &SearchContext<'_>,
        s: &GumbelSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        Ok(Box::new(GumbelMuZero::new(GumbelConfig {
            max_num_considered_actions: s.max_considered,
            gumbel_scale: s.gumbel_scale as f32,
            qtransform: MixValue {
                rescale_values: !ctx.bounded_values,
                ..MixValue::default()
            },
            early_stop: early_stop(s.stop_when_confident, s.min_simulations),
            whole_rounds: s.whole_rounds,
            ..GumbelConfig::default()
        })?))
    }

    fn carries_unspent(s: &GumbelSettings) -> bool {
        s.carry_unspent
    }
}

/// `mcts_anytime`: `mcts` that stops a decision early by default (`stop_when_confident = 0.9`
/// after `min_simulations = 16`), registered under its own name so that one comparison can
/// hold it next to the fixed-budget `mcts`. Unspent calls are not carried unless
/// `carry_unspent` is set. The defaults are those that kept `mcts`'s accuracy at less
/// compute on Cycle L=10 (docs/search.md).
pub struct AnytimeMcts;

impl BuildSearcher for AnytimeMcts {
    const NAME: &'static str = "mcts_anytime";
    const SUMMARY: &'static str =
        "mcts that ends a decision once its top visit share reaches stop_when_confident";
    const PLAYS: Plays = Plays::EachAction;
    type Settings = MctsSettings;

    fn defaults(purpose: SearchPurpose) -> MctsSettings {
        MctsSettings {
            stop_when_confident: 0.9,
            min_simulations: 16,
            ..<Mcts<AnyEnv> as BuildSearcher>::defaults(purpose)
        }
    }

    fn validate(s: &MctsSettings) -> Result<(), String> {
        <Mcts<AnyEnv> as BuildSearcher>::validate(s)
    }

    fn build(
        ctx: &SearchContext<'_>,
        s: &MctsSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        <Mcts<AnyEnv> as BuildSearcher>::build(ctx, s)
    }

    fn carries_unspent(s: &MctsSettings) -> bool {
        s.carry_unspent
    }
}

/// `gumbel_anytime`: `gumbel` that stops a decision early by default
/// (`stop_when_confident = 0.7` after `min_simulations = 4`), registered under its own name as
/// [`AnytimeMcts`] is.
pub struct AnytimeGumbel;

impl BuildSearcher for AnytimeGumbel {
    const NAME: &'static str = "gumbel_anytime";
    const SUMMARY: &'static str = "gumbel that ends a decision once its improved policy's top \
         probability reaches stop_when_confident";
    const PLAYS: Plays = Plays::EachAction;
    type Settings = GumbelSettings;

    fn defaults(purpose: SearchPurpose) -> GumbelSettings {
        GumbelSettings {
            stop_when_confident: 0.7,
            ..<GumbelMuZero<AnyEnv> as BuildSearcher>::defaults(purpose)
        }
    }

    fn validate(s: &GumbelSettings) -> Result<(), String> {
        <GumbelMuZero<AnyEnv> as BuildSearcher>::validate(s)
    }

    fn build(
        ctx: &SearchContext<'_>,
        s: &GumbelSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        <GumbelMuZero<AnyEnv> as BuildSearcher>::build(ctx, s)
    }

    fn carries_unspent(s: &GumbelSettings) -> bool {
        s.carry_unspent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_depend_on_the_purpose_and_unknown_keys_are_named() {
        let eval = SearchSpec::parse("mcts", SearchPurpose::Evaluate).unwrap();
        assert_eq!(eval.settings["dirichlet_fraction"].as_float(), Some(0.0));
        let train = SearchSpec::parse("mcts", SearchPurpose::Train).unwrap();
        assert_eq!(train.settings["dirichlet_fraction"].as_float(), Some(0.25));

        let mut t = toml::Table::new();
        t.insert("max_considred".into(), toml::Value::Integer(4));
        let err = SearchSpec::resolve("gumbel", &t, SearchPurpose::Train).unwrap_err();
        assert!(
            err.contains("max_considred")
                && err.contains(
                    "settings are: carry_unspent, gumbel_scale, max_considered, \
                     min_simulations, stop_when_confident"
                ),
            "{err}"
        );
        let err = SearchSpec::parse("gumbell", SearchPurpose::Train).unwrap_err();
        assert!(
            err.contains("gumbell") && err.contains("greedy, vote, beam"),
            "{err}"
        );
    }

    #[test]
    fn set_reads_toml_values_and_checks_the_range() {
        let mut spec = SearchSpec::parse("gumbel", SearchPurpose::Evaluate).unwrap();
        spec.set("max_considered", "4", SearchPurpose::Evaluate)
            .unwrap();
        assert_eq!(spec.settings["max_considered"].as_integer(), Some(4));
        let err = spec
            .set("max_considered", "0", SearchPurpose::Evaluate)
            .unwrap_err();
        assert!(err.contains("max_considered = 0"), "{err}");
        // A failed set changes nothing.
        assert_eq!(spec.settings["max_considered"].as_integer(), Some(4));
        assert_eq!(
            spec.to_string(),
            "gumbel(carry_unspent=false, gumbel_scale=0.0, max_considered=4, \
             min_simulations=4, stop_when_confident=0.0, whole_rounds=true)"
        );
    }

    #[test]
    fn a_budget_pool_banks_what_a_decision_left_only_when_it_carries() {
        let mut pool = BudgetPool::new(2, 8, true);
        assert_eq!((pool.budget(0), pool.budget(1)), (8, 8));
        pool.spent(0, 8, 3);
        assert_eq!((pool.budget(0), pool.budget(1)), (13, 8));
        // The bank is what the last decision left of its whole budget, bank included.
        pool.spent(0, 13, 10);
        assert_eq!(pool.budget(0), 11);
        pool.spent(0, 11, 11);
        assert_eq!(pool.budget(0), 8);
        pool.spent(1, 8, 0);
        pool.spent(1, 16, 0);
        assert_eq!(pool.budget(1), 24);
        let mut fixed = BudgetPool::new(1, 8, false);
        fixed.spent(0, 8, 1);
        assert_eq!(fixed.budget(0), 8);
        // Never above MAX_BUDGET.
        let mut big = BudgetPool::new(1, MAX_BUDGET - 1, true);
        big.spent(0, MAX_BUDGET - 1, 0);
        assert_eq!(big.budget(0), MAX_BUDGET);
    }

    #[test]
    fn anytime_variants_are_their_searchers_with_stopping_and_carrying_on() {
        let mut any = SearchSpec::parse("gumbel_anytime", SearchPurpose::Evaluate).unwrap();
        let plain = SearchSpec::parse("gumbel", SearchPurpose::Evaluate).unwrap();
        assert_eq!(any.settings["stop_when_confident"].as_float(), Some(0.7));
        assert_eq!(plain.settings["stop_when_confident"].as_float(), Some(0.0));
        assert!(!any.carries_unspent().unwrap());
        any.set("carry_unspent", "true", SearchPurpose::Evaluate)
            .unwrap();
        assert!(any.carries_unspent().unwrap());
        let mut spec = SearchSpec::parse("mcts_anytime", SearchPurpose::Train).unwrap();
        assert_eq!(spec.settings["dirichlet_fraction"].as_float(), Some(0.25));
        assert_eq!(spec.settings["min_simulations"].as_integer(), Some(16));
        let err = spec
            .set("stop_when_confident", "1.5", SearchPurpose::Train)
            .unwrap_err();
        assert!(err.contains("stop_when_confident = 1.5"), "{err}");
    }

    #[test]
    fn a_spec_reads_from_a_name_or_a_table_and_writes_a_table() {
        #[derive(Deserialize, Serialize)]
        struct C {
            s: SearchSpec,
        }
        let c: C = toml::from_str("s = \"beam\"").unwrap();
        assert_eq!(c.s.name, "beam");
        let c: C = toml::from_str("s = { name = \"gumbel\", max_considered = 3 }").unwrap();
        let spec = c.s.resolved(SearchPurpose::Train).unwrap();
        assert_eq!(spec.settings["max_considered"].as_integer(), Some(3));
        assert_eq!(spec.settings["gumbel_scale"].as_float(), Some(1.0));
        let text = toml::to_string(&C { s: spec.clone() }).unwrap();
        let back: C = toml::from_str(&text).unwrap();
        assert_eq!(back.s, spec);
        assert!(toml::from_str::<C>("s = { max_considered = 3 }").is_err());
    }
}
