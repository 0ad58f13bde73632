//! `if (…) { return …; }` blocks, as loaded: their conditions and how one
//! is tested against a request.

use super::Action;
use crate::variables::Template;

/// `if (CONDITION) { return …; }` (nginx's rewrite module, the part real
/// configurations use most: certbot writes `if ($host = example.com) {
/// return 301 https://$host$request_uri; }`). Tried in file order when a
/// request is routed, the server's before the location's; the first whose
/// condition holds answers with its `return`.
#[derive(Clone, Debug)]
pub struct IfReturn {
    pub condition: Condition,
    /// An [`Action::Return`].
    pub action: Action,
}

/// An `if` condition: a variable, tested.
#[derive(Clone, Debug)]
pub struct Condition {
    pub variable: Template,
    pub test: ConditionTest,
}

#[derive(Clone, Debug)]
pub enum ConditionTest {
    /// `($var)`: neither empty nor `0`.
    True,
    /// `($var = TEXT)`, `($var != TEXT)`.
    Equals(String, bool),
    /// `($var ~ RE)`, `~*` (case-insensitive), `!~`, `!~*`.
    Matches(regex_lite::Regex, bool),
}

impl ConditionTest {
    /// Whether the text side names a variable (not supported yet).
    pub fn has_variables(&self) -> bool {
        match self {
            ConditionTest::Equals(text, _) => text.contains('$'),
            _ => false,
        }
    }
}

impl Condition {
    /// Whether it holds for `request`; `scratch` receives the variable's
    /// value (a pooled buffer: no allocation).
    pub fn holds(
        &self,
        request: &crate::variables::RequestView<'_>,
        scratch: &mut Vec<u8>,
    ) -> bool {
        scratch.clear();
        self.variable.render(request, scratch);
        let value = &scratch[..];
        match &self.test {
            ConditionTest::True => !value.is_empty() && value != b"0",
            ConditionTest::Equals(text, equal) => (value == text.as_bytes()) == *equal,
            ConditionTest::Matches(regex, matching) => {
                std::str::from_utf8(value).is_ok_and(|text| regex.is_match(text)) == *matching
            }
        }
    }
}
