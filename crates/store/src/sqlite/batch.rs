//! Set-based writes: a batch of rows goes in as multi-row `VALUES` lists with bound parameters,
//! cut into chunks of a few fixed sizes, so that a batch of any length takes a handful of
//! statements and each statement shape is prepared once (sqlx caches it by its text).
//!
//! Use anonymous `?` placeholders only in these statements, in text order: sqlx numbers
//! anonymous ones by counting them, blind to any `?NNN` beside them.

/// Chunk sizes, largest first. Every size times the widest row (17 columns) stays far below
/// SQLite's 32,766 bound parameters.
const SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// Cuts `rows` greedily into chunks of the sizes above.
pub(super) fn chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = SIZES.into_iter().find(|s| *s <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

/// Whether a statement of `rows` rows stays prepared in the connection's cache. The largest
/// chunk's statements compile to programs of hundreds of kilobytes each; kept, a few bursts
/// leave megabytes in every connection that ran them, for a parse (about a millisecond) that is
/// small beside the statement's own work.
pub(super) fn keep_prepared(rows: usize) -> bool {
    rows < SIZES[0]
}

/// `(?, ?, …), (?, ?, …), …`: `rows` tuples of `width` placeholders.
pub(super) fn values(rows: usize, width: usize) -> String {
    let mut row = String::with_capacity(width * 3 + 2);
    row.push('(');
    for i in 0..width {
        if i > 0 {
            row.push_str(", ");
        }
        row.push('?');
    }
    row.push(')');
    let mut out = String::with_capacity(rows * (row.len() + 2));
    for i in 0..rows {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_with_few_shapes() {
        for n in [0usize, 1, 3, 4, 5, 255, 256, 257, 1000, 1001] {
            let rows: Vec<usize> = (0..n).collect();
            let cut = chunks(&rows);
            assert_eq!(cut.concat(), rows);
            assert!(cut.iter().all(|c| SIZES.contains(&c.len())));
        }
        assert_eq!(values(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
