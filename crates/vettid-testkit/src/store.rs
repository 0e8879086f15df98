//! The adversarial host's object store: names to bytes, in memory, editable by the test.

use std::collections::BTreeMap;

/// Stored objects by name. Cloning one is how a test keeps an old state to serve later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    objects: BTreeMap<String, Vec<u8>>,
}

impl Store {
    /// Names under `prefix`, sorted.
    pub fn names(&self, prefix: &str) -> Vec<String> {
        self.objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// An object's bytes.
    pub fn get(&self, name: &str) -> Option<&Vec<u8>> {
        self.objects.get(name)
    }

    /// Stores `bytes` under `name` (replacing what is there): what a lying host does.
    pub fn put(&mut self, name: &str, bytes: Vec<u8>) {
        self.objects.insert(name.to_owned(), bytes);
    }

    /// Creates `name` only if it is free; whether it was.
    pub fn create(&mut self, name: &str, bytes: Vec<u8>) -> bool {
        if self.objects.contains_key(name) {
            return false;
        }
        self.objects.insert(name.to_owned(), bytes);
        true
    }

    /// Removes `name`; its bytes if it existed.
    pub fn remove(&mut self, name: &str) -> Option<Vec<u8>> {
        self.objects.remove(name)
    }

    /// Removes everything under `prefix`.
    pub fn remove_prefix(&mut self, prefix: &str) {
        for name in self.names(prefix) {
            self.objects.remove(&name);
        }
    }

    /// The numbers of vault `vault`'s objects of kind `dir` (`keys`, `guard`, `log`, …).
    pub fn numbers(&self, vault: &str, dir: &str) -> Vec<u64> {
        let prefix = format!("vaults/{vault}/{dir}/");
        self.names(&prefix)
            .iter()
            .filter_map(|n| n[prefix.len()..].parse().ok())
            .collect()
    }

    /// The name of vault `vault`'s object of kind `dir` numbered `number`.
    pub fn name(vault: &str, dir: &str, number: u64) -> String {
        format!("vaults/{vault}/{dir}/{number:020}")
    }

    /// Every object of vault `vault`, for keeping or replacing a whole vault at once.
    pub fn vault(&self, vault: &str) -> Store {
        let prefix = format!("vaults/{vault}/");
        Store {
            objects: self
                .names(&prefix)
                .into_iter()
                .map(|n| {
                    let bytes = self.objects[&n].clone();
                    (n, bytes)
                })
                .collect(),
        }
    }

    /// Replaces vault `vault`'s objects with those in `saved` (from [`Store::vault`]).
    pub fn restore_vault(&mut self, vault: &str, saved: &Store) {
        self.remove_prefix(&format!("vaults/{vault}/"));
        for (name, bytes) in &saved.objects {
            self.objects.insert(name.clone(), bytes.clone());
        }
    }
}
