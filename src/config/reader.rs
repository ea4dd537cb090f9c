//! Reading variables: trimmed values, typed parsers that refuse instead of clamping, and the
//! problems they find, scoped to the section being read.

use secrecy::SecretString;

use super::checks::{is_placeholder, url_problem};
use super::problem::{add_once, Problem, ProblemKind, Scope};
use crate::phone::{self, E164};

/// Where a value comes from: the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Reads variables and collects problems.
pub(super) struct Reader<'a> {
    source: &'a dyn Source,
    pub(super) production: bool,
    problems: Vec<Problem>,
    /// The scope of the problems found now (a provider's while its group is read).
    scope: Scope,
}

impl<'a> Reader<'a> {
    pub(super) fn new(source: &'a dyn Source, production: bool) -> Self {
        Reader {
            source,
            production,
            problems: Vec::new(),
            scope: Scope::AllCalls,
        }
    }

    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Runs `read` with the problems it finds scoped to `scope`.
    pub(super) fn scoped<T>(&mut self, scope: Scope, read: impl FnOnce(&mut Self) -> T) -> T {
        let outer = std::mem::replace(&mut self.scope, scope);
        let value = read(self);
        self.scope = outer;
        value
    }

    fn push(&mut self, name: &'static str, kind: ProblemKind, reason: &'static str) {
        add_once(&mut self.problems, name, kind, reason, self.scope);
    }

    pub(super) fn has_problem(&self, name: &str) -> bool {
        self.problems.iter().any(|p| p.name == name)
    }

    pub(super) fn missing(&mut self, name: &'static str, reason: &'static str) {
        self.push(name, ProblemKind::Missing, reason);
    }

    pub(super) fn refuse(&mut self, name: &'static str, reason: &'static str) {
        self.push(name, ProblemKind::Refused, reason);
    }

    /// A trimmed, non-empty value. A template placeholder is refused in production and treated
    /// as unset in development (so a copied `.env.example` runs on the dry-run provider).
    pub(super) fn value(&mut self, name: &'static str) -> Option<String> {
        let value = self.source.get(name)?.trim().to_string();
        if value.is_empty() {
            return None;
        }
        if is_placeholder(&value) {
            if self.production {
                self.refuse(name, "still holds a placeholder of the .env template");
            }
            return None;
        }
        Some(value)
    }

    pub(super) fn secret(&mut self, name: &'static str) -> Option<SecretString> {
        self.value(name).map(SecretString::from)
    }

    pub(super) fn boolean(&mut self, name: &'static str) -> Option<bool> {
        match self.value(name)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.refuse(name, "expected true or false");
                None
            }
        }
    }

    pub(super) fn number(&mut self, name: &'static str, min: u64, max: u64) -> Option<u64> {
        let raw = self.value(name)?;
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.refuse(name, "expected a whole number in range");
                None
            }
        }
    }

    pub(super) fn phone(&mut self, name: &'static str) -> Option<E164> {
        let raw = self.value(name)?;
        match phone::normalize(&raw) {
            Ok(n) => Some(n),
            Err(_) => {
                self.refuse(name, "expected an E.164 number");
                None
            }
        }
    }

    pub(super) fn url(&mut self, name: &'static str) -> Option<String> {
        let raw = self.value(name)?;
        match url_problem(&raw) {
            None => Some(raw.trim_end_matches('/').to_string()),
            Some(reason) => {
                self.refuse(name, reason);
                None
            }
        }
    }

    /// Marks every absent variable of a provider group as missing.
    pub(super) fn require_group(&mut self, names: &[&'static str], reason: &'static str) {
        for &name in names {
            if self.source.get(name).is_none_or(|v| v.trim().is_empty()) {
                self.missing(name, reason);
            }
        }
    }

    /// A group counts as intended when any of its variables holds a value (a development
    /// placeholder does not count: a copied `.env.example` runs on the dry-run provider).
    pub(super) fn group_intended(&self, names: &[&'static str]) -> bool {
        names.iter().any(|n| {
            self.source
                .get(n)
                .is_some_and(|v| !v.trim().is_empty() && (self.production || !is_placeholder(&v)))
        })
    }

    pub(super) fn problem_count(&self) -> usize {
        self.problems.len()
    }
}
