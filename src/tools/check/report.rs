//! The report card: every check's outcome, the summary, and the JSON object.

use crate::json_string;
use crate::tools::client::Target;

use super::*;

/// Every check's result, in the order they ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub(super) fn count(&self, level: Option<Level>, status: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == status && level.is_none_or(|l| o.level == l)).count()
    }

    /// The outcome of the check called `name`.
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }

    /// Whether every required check passed (or passed with a warning).
    pub fn meets_the_sheet(&self) -> bool {
        self.count(Some(Level::Required), Status::Fail) == 0
    }

    /// The last line of the report card.
    pub fn summary(&self) -> String {
        let of = |level| {
            let all = self.outcomes.iter().filter(|o| o.level == level).count();
            all - self.count(Some(level), Status::Fail)
        };
        let all = |level| self.outcomes.iter().filter(|o| o.level == level).count();
        let warned = self.count(None, Status::Warn);
        format!(
            "{} of {} required and {} of {} recommended checks met{}: {}",
            of(Level::Required),
            all(Level::Required),
            of(Level::Recommended),
            all(Level::Recommended),
            match warned {
                0 => String::new(),
                n => format!(" ({n} with a warning)"),
            },
            if self.meets_the_sheet() {
                "the server does what the sheet asks"
            } else {
                "the server does not do what the sheet asks"
            }
        )
    }

    /// The report as one JSON object.
    pub fn json(&self, target: &Target) -> String {
        let checks: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| {
                format!(
                    "{{\"name\":\"{}\",\"level\":\"{}\",\"status\":\"{}\",\"what\":{},\"detail\":{}}}",
                    o.name,
                    match o.level {
                        Level::Required => "required",
                        Level::Recommended => "recommended",
                    },
                    o.status.word(),
                    json_string(o.what),
                    json_string(&o.detail),
                )
            })
            .collect();
        format!(
            "{{\"target\":{},\"checks\":[{}],\"passed\":{},\"warned\":{},\"failed\":{},\"meets_the_sheet\":{}}}",
            json_string(&target.to_string()),
            checks.join(","),
            self.count(None, Status::Pass),
            self.count(None, Status::Warn),
            self.count(None, Status::Fail),
            self.meets_the_sheet(),
        )
    }
}

/// One report-card line (and its detail lines) for `o`.
pub fn card_line(o: &Outcome) -> String {
    let mut s = format!("  {:<4}  {:<16} {}\n", o.status.word().to_ascii_uppercase(), o.name, o.what);
    if o.status != Status::Pass || !o.detail.is_empty() {
        for line in o.detail.lines() {
            s.push_str(&format!("        {:<16} {line}\n", ""));
        }
    }
    s
}
