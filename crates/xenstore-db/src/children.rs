//! A node's children list: leaf names in creation order, compact when small.
//!
//! Most nodes have no children and most directories a handful, so a list
//! is nothing at all when empty and one shared slice when small (copied on
//! change: at most [`SMALL_MAX`] pointers). Past that it becomes a
//! persistent vector, so that adding a domain under `/local/domain` with
//! thousands of siblings costs O(log n), not a copy of the list. A small
//! list takes 16 bytes per name; `imbl::Vector` reserves a 64-slot chunk
//! (over 1 KiB) even for a few.

use std::sync::Arc;

use imbl::Vector;

use crate::node::Name;

/// Lists up to this long are a plain shared slice.
pub const SMALL_MAX: usize = 32;

/// The children of one node.
#[derive(Debug, Clone, Default)]
pub enum Children {
    /// No children.
    #[default]
    Empty,
    /// Up to [`SMALL_MAX`] names.
    Small(Arc<[Name]>),
    /// More: a persistent vector (boxed to keep the node small).
    Large(Box<Vector<Name>>),
}

impl Children {
    /// Number of children.
    pub fn len(&self) -> usize {
        match self {
            Children::Empty => 0,
            Children::Small(names) => names.len(),
            Children::Large(names) => names.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names in creation order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            Children::Empty => Iter::Slice([].iter()),
            Children::Small(names) => Iter::Slice(names.iter()),
            Children::Large(names) => Iter::Vector(names.iter()),
        }
    }

    /// Appends a name.
    pub fn push(&mut self, name: Name) {
        match self {
            Children::Empty => *self = Children::Small(Arc::from([name])),
            Children::Small(names) if names.len() < SMALL_MAX => {
                let mut grown = Vec::with_capacity(names.len() + 1);
                grown.extend(names.iter().cloned());
                grown.push(name);
                *names = Arc::from(grown);
            }
            Children::Small(names) => {
                let mut vector: Vector<Name> = names.iter().cloned().collect();
                vector.push_back(name);
                *self = Children::Large(Box::new(vector));
            }
            Children::Large(names) => names.push_back(name),
        }
    }

    /// Removes the first child with this name; `false` if there is none.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.iter().position(|c| &**c == name) else {
            return false;
        };
        match self {
            Children::Empty => return false,
            Children::Small(names) => {
                if names.len() == 1 {
                    *self = Children::Empty;
                } else {
                    let kept: Vec<Name> =
                        names.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n.clone()).collect();
                    *names = Arc::from(kept);
                }
            }
            Children::Large(names) => {
                names.remove(i);
            }
        }
        true
    }
}

/// Iterator over [`Children`], both ways.
pub enum Iter<'a> {
    /// Over an empty or small list.
    Slice(std::slice::Iter<'a, Name>),
    /// Over a large list.
    Vector(imbl::vector::Iter<'a, Name, imbl::shared_ptr::DefaultSharedPtr>),
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("children::Iter").field("remaining", &self.size_hint().0).finish()
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Name;

    fn next(&mut self) -> Option<&'a Name> {
        match self {
            Iter::Slice(it) => it.next(),
            Iter::Vector(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Slice(it) => it.size_hint(),
            Iter::Vector(it) => it.size_hint(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Slice(it) => it.next_back(),
            Iter::Vector(it) => it.next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(c: &Children) -> Vec<String> {
        c.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn order_is_kept_across_the_small_to_large_switch() {
        let mut c = Children::default();
        let all: Vec<String> = (0..SMALL_MAX * 3).map(|i| format!("n{i}")).collect();
        for (i, n) in all.iter().enumerate() {
            c.push(Name::from(n.as_str()));
            assert_eq!(c.len(), i + 1);
            assert_eq!(matches!(c, Children::Large(_)), i + 1 > SMALL_MAX);
        }
        assert_eq!(names(&c), all);
        let back: Vec<String> = c.iter().rev().map(|n| n.to_string()).collect();
        assert_eq!(back, all.iter().rev().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn remove_keeps_the_others_in_order() {
        for size in [1, 3, SMALL_MAX, SMALL_MAX + 5] {
            let mut c = Children::default();
            for i in 0..size {
                c.push(Name::from(format!("n{i}").as_str()));
            }
            assert!(!c.remove("absent"));
            assert!(c.remove(&format!("n{}", size / 2)));
            let want: Vec<String> = (0..size).filter(|i| *i != size / 2).map(|i| format!("n{i}")).collect();
            assert_eq!(names(&c), want, "size {size}");
        }
        let mut one = Children::default();
        one.push(Name::from("x"));
        assert!(one.remove("x"));
        assert!(matches!(one, Children::Empty) && one.is_empty());
    }

    #[test]
    fn clones_share_and_diverge() {
        let mut a = Children::default();
        a.push(Name::from("x"));
        let b = a.clone();
        a.push(Name::from("y"));
        assert_eq!(names(&a), ["x", "y"]);
        assert_eq!(names(&b), ["x"]);
    }
}
