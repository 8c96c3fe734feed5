//! Hyperparameter values for TensorBoard's HPARAMS tab, and flattening a TOML config into them.

use super::LogError;

/// One hyperparameter value, in the three types the hparams plugin knows.
#[derive(Clone, Debug, PartialEq)]
pub enum HParam {
    /// A number (integers included; the plugin stores float64).
    Num(f64),
    /// A string (also used for arrays and dates, in their TOML form).
    Str(String),
    /// A boolean.
    Bool(bool),
}

macro_rules! hparam_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for HParam {
            fn from(x: $t) -> Self {
                HParam::Num(x as f64)
            }
        }
    )*};
}
hparam_from_number!(f64, f32, i64, i32, u64, u32, usize);

impl From<bool> for HParam {
    fn from(b: bool) -> Self {
        HParam::Bool(b)
    }
}

impl From<&str> for HParam {
    fn from(s: &str) -> Self {
        HParam::Str(s.to_string())
    }
}

impl From<String> for HParam {
    fn from(s: String) -> Self {
        HParam::Str(s)
    }
}

impl From<&toml::Value> for HParam {
    fn from(v: &toml::Value) -> Self {
        match v {
            toml::Value::Integer(i) => HParam::Num(*i as f64),
            toml::Value::Float(x) => HParam::Num(*x),
            toml::Value::Boolean(b) => HParam::Bool(*b),
            toml::Value::String(s) => HParam::Str(s.clone()),
            other => HParam::Str(other.to_string()),
        }
    }
}

/// Flattens a TOML document into `(dotted.key, value)` pairs sorted by key; tables nest
/// (`[model] heads = 4` gives `model.heads`), every other value is a leaf (arrays included).
pub fn flatten_toml(toml_text: &str) -> Result<Vec<(String, toml::Value)>, LogError> {
    let table: toml::Table =
        toml::from_str(toml_text).map_err(|e| LogError::Toml(e.to_string()))?;
    let mut out = Vec::new();
    flatten_into("", &table, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn flatten_into(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten_into(&name, inner, out),
            leaf => out.push((name, leaf.clone())),
        }
    }
}

/// The hyperparameters of a resolved config: every leaf of the TOML document, keyed by its
/// dotted path. Pass the result to [`super::Logger::hparams`].
pub fn hparams_from_toml(toml_text: &str) -> Result<Vec<(String, HParam)>, LogError> {
    Ok(flatten_toml(toml_text)?
        .iter()
        .map(|(k, v)| (k.clone(), HParam::from(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_nested_tables_with_dotted_keys() {
        let hp = hparams_from_toml(
            "seed = 7\nname = \"a\"\n[model]\nheads = 4\nbias = false\n[optim.sched]\nwarmup = 0.5\nsteps = [1, 2]\n",
        )
        .unwrap();
        assert_eq!(
            hp,
            vec![
                ("model.bias".to_string(), HParam::Bool(false)),
                ("model.heads".to_string(), HParam::Num(4.0)),
                ("name".to_string(), HParam::Str("a".into())),
                (
                    "optim.sched.steps".to_string(),
                    HParam::Str("[1, 2]".into())
                ),
                ("optim.sched.warmup".to_string(), HParam::Num(0.5)),
                ("seed".to_string(), HParam::Num(7.0)),
            ]
        );
    }

    #[test]
    fn invalid_toml_is_an_error() {
        assert!(matches!(hparams_from_toml("a = "), Err(LogError::Toml(_))));
    }
}
