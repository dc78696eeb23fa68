//! The statement's tokens, bounded in number, with the `TABLE` keyword of
//! window table function arguments dropped.

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::{unsupported, SqlError};

/// The longest statement accepted, in tokens (whitespace not counted).
/// sqlparser builds operator chains (`a AND b AND …`) without a depth limit
/// and its trees drop and print recursively, so a long enough chain
/// overflows the stack; this bounds the depth at about half of it (a 4 000
/// deep chain was measured to fit a 2 MiB thread in a debug build).
const MAX_TOKENS: usize = 4096;

/// Tokenizes `sql` for the parser: at most [`MAX_TOKENS`], and `TABLE t`
/// arguments inside `TABLE(…)` reduced to `t`.
pub(super) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    let significant = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .count();
    if significant > MAX_TOKENS {
        return Err(unsupported(
            "statement",
            format!("{significant} tokens; a job statement has at most {MAX_TOKENS}"),
        ));
    }
    drop_table_keywords(tokens)
}

/// Drops the `TABLE` keyword of `TABLE name` arguments inside `TABLE(…)`:
/// sqlparser cannot parse it as a function argument. Refuses `PARTITION BY`
/// there, which it cannot parse either.
fn drop_table_keywords(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, SqlError> {
    let keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none());
    let is_table = |t: &Token| keyword(t, Keyword::TABLE);
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut drop = vec![false; tokens.len()];
    let mut depth = 0usize;
    // paren depths at which a `TABLE(` opened
    let mut regions: Vec<usize> = Vec::new();
    for (k, &i) in significant.iter().enumerate() {
        let previous = k.checked_sub(1).map(|p| &tokens[significant[p]].token);
        match &tokens[i].token {
            Token::LParen => {
                depth += 1;
                if previous.is_some_and(is_table) {
                    regions.push(depth);
                }
            }
            Token::RParen => {
                if regions.last() == Some(&depth) {
                    regions.pop();
                }
                depth = depth.saturating_sub(1);
            }
            token if is_table(token) && !regions.is_empty() => {
                let after_open =
                    matches!(previous, Some(Token::LParen | Token::Comma | Token::RArrow));
                let before_name = significant
                    .get(k + 1)
                    .is_some_and(|&j| matches!(tokens[j].token, Token::Word(_)));
                drop[i] = after_open && before_name;
            }
            token if keyword(token, Keyword::PARTITION) && !regions.is_empty() => {
                let before_by = significant
                    .get(k + 1)
                    .is_some_and(|&j| keyword(&tokens[j].token, Keyword::BY));
                if before_by {
                    return Err(unsupported(
                        "FROM",
                        "PARTITION BY in a window table function (keys come from GROUP BY)"
                            .to_string(),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(tokens
        .into_iter()
        .zip(drop)
        .filter_map(|(token, drop)| (!drop).then_some(token))
        .collect())
}
