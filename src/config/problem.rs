//! What the configuration found wrong: a variable missing or refused, and which calls it stops.

use crate::dispatch::ProviderKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Required and absent.
    Missing,
    /// Present but refused: malformed, weak, or a template placeholder.
    Refused,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Refused => "refused",
        }
    }
}

/// Which calls a problem stops. No call is ever placed on a value that was refused: a refused
/// value never falls back to a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every call: `start_call` answers `503 misconfigured`.
    AllCalls,
    /// Every call that would use this provider (named in the request, or the default one):
    /// `503 misconfigured`. Calls through another, sound provider go on.
    Provider(ProviderKind),
    /// No provider is configured at all: calls find none (`503 provider_not_configured`).
    NoProvider,
    /// Every anonymous call (the bot check half set up, docs/API.md §16): `503 misconfigured`.
    /// Authenticated calls go on.
    PublicCalls,
}

/// One variable that keeps the configuration from being complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub name: &'static str,
    pub kind: ProblemKind,
    /// Why, and what to set: for health and the start-up log. Never contains the value.
    pub reason: &'static str,
    pub scope: Scope,
}

/// Adds a problem unless its variable already has one (the first reason found is kept).
pub(super) fn add_once(
    problems: &mut Vec<Problem>,
    name: &'static str,
    kind: ProblemKind,
    reason: &'static str,
    scope: Scope,
) {
    if !problems.iter().any(|p| p.name == name) {
        problems.push(Problem {
            name,
            kind,
            reason,
            scope,
        });
    }
}
