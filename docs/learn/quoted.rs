//! For the chapters' tests: what a page quotes, and a comparison that
//! ignores what changes from run to run. Each chapter's example includes
//! this file (`#[path = "quoted.rs"] mod quoted;`), so the pages cannot
//! drift from what the programs print.

// Not every chapter needs every helper.
#![allow(dead_code)]

/// Asserts that `printed` is what `page`'s first ```text block quotes,
/// line for line, after `mask` (ports, numbers) on both sides; lines
/// `keep` refuses are left out of both.
pub fn assert_quoted(
    page: &str,
    printed: &[String],
    mask: impl Fn(&str) -> String,
    keep: impl Fn(&str) -> bool,
) {
    let block = page
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```text block");
    let quoted: Vec<String> = block.lines().filter(|l| keep(l)).map(&mask).collect();
    let printed: Vec<String> = printed
        .iter()
        .filter(|l| keep(l))
        .map(|l| mask(l))
        .collect();
    assert_eq!(
        printed, quoted,
        "the page quotes something else than the program prints"
    );
}

/// Every run of digits as `N`, and runs of spaces as one.
pub fn numbers_masked(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('N');
        } else if c == ' ' {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}
