//! What is built once from a model's constant tensors (packed weights) and shared by every plan
//! that holds the same tensors: a model's plans (one per input signature), its streams' and its
//! pools' plans all read one copy, which saves memory and keeps one copy in cache when they run
//! side by side.
//!
//! An entry holds its tensors, so a pointer seen equal is the same tensor, not a new one at a
//! freed address; it lasts while some plan holds what was built.

use std::sync::{Arc, Mutex, Weak};

use tract_hir::internal::{Tensor, TractResult};

/// The constant tensors a value is built from, in the builder's order (`None`: absent).
pub(crate) type Tensors = Vec<Option<Arc<Tensor>>>;

struct Entry<K, V> {
    key: K,
    tensors: Tensors,
    built: Weak<V>,
}

/// Values of type `V` built from constant tensors, keyed by `K` (what else the build depends
/// on: the node, the element type, a storage format).
pub(crate) struct SharedBuilds<K, V> {
    entries: Mutex<Vec<Entry<K, V>>>,
}

impl<K: PartialEq + Clone, V> SharedBuilds<K, V> {
    pub(crate) const fn new() -> Self {
        SharedBuilds {
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The value built for `key` from these tensors, built now by `build` if no plan holds one.
    pub(crate) fn get_or_build(
        &self,
        key: K,
        tensors: Tensors,
        build: impl FnOnce(&K, &Tensors) -> TractResult<V>,
    ) -> TractResult<Arc<V>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.built.strong_count() > 0);
        let found = entries.iter().find_map(|e| {
            let hit = e.key == key && same_tensors(&e.tensors, &tensors);
            hit.then(|| e.built.upgrade()).flatten()
        });
        if let Some(value) = found {
            return Ok(value);
        }
        let value = Arc::new(build(&key, &tensors)?);
        entries.push(Entry {
            key,
            tensors,
            built: Arc::downgrade(&value),
        });
        Ok(value)
    }

    /// The key and tensors `value` was built from, while some plan holds it.
    pub(crate) fn origin(&self, value: &Arc<V>) -> Option<(K, Tensors)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|e| std::ptr::eq(e.built.as_ptr(), Arc::as_ptr(value)))
            .map(|e| (e.key.clone(), e.tensors.clone()))
    }
}

fn same_tensors(a: &Tensors, b: &Tensors) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_hir::internal::tensor1;

    #[test]
    fn one_build_per_key_and_tensors_while_held() {
        let builds: SharedBuilds<u8, usize> = SharedBuilds::new();
        let w = Arc::new(tensor1(&[1.0f32, 2.0]));
        let count = std::sync::atomic::AtomicUsize::new(0);
        let build =
            |_: &u8, _: &Tensors| Ok(count.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let a = builds
            .get_or_build(1, vec![Some(w.clone()), None], build)
            .unwrap();
        let b = builds
            .get_or_build(1, vec![Some(w.clone()), None], build)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Another key, or an equal tensor that is another tensor, is another build.
        let c = builds
            .get_or_build(2, vec![Some(w.clone()), None], build)
            .unwrap();
        let copy = Arc::new(tensor1(&[1.0f32, 2.0]));
        let d = builds
            .get_or_build(1, vec![Some(copy), None], build)
            .unwrap();
        assert_eq!((*a, *c, *d), (0, 1, 2));
        let (key, tensors) = builds.origin(&c).unwrap();
        assert_eq!(key, 2);
        assert!(Arc::ptr_eq(tensors[0].as_ref().unwrap(), &w));
        // Once no plan holds it, the next request builds again.
        drop((a, b));
        let e = builds.get_or_build(1, vec![Some(w), None], build).unwrap();
        assert_eq!(*e, 3);
    }
}
