//! Which cluster and node a data directory belongs to: `meta.properties` at its
//! root, in Kafka's format, written at first start and checked at every start
//! after, so a data directory is never opened by another node id or joined to
//! another cluster by mistake (a copied directory, a swapped mount, a typo in
//! `--node-id`).
//!
//! ```text
//! # Written by Weir at first start: the cluster and node this directory belongs to.
//! version=1
//! cluster.id=Kq3vQ5lSR2a0mJ8Xc1Tn7w
//! node.id=1
//! ```
//!
//! A directory written before this file existed (an older single node) gets one
//! at its next start: its data stays where it is.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the identity file inside the data directory.
pub const FILE: &str = "meta.properties";

/// The cluster and node a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The cluster id (Kafka's form: 22 characters of URL-safe base64).
    pub cluster_id: String,
    /// This node's id.
    pub node_id: i32,
}

/// Why the data directory cannot be opened as this node.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The directory belongs to another node id.
    #[error(
        "{path} belongs to node {found}, not node {wanted}: start with --node-id {found}, \
         or use another --data-dir for node {wanted}"
    )]
    OtherNode {
        /// The identity file.
        path: PathBuf,
        /// The node id recorded in it.
        found: i32,
        /// The node id this process was started with.
        wanted: i32,
    },
    /// The directory belongs to another cluster.
    #[error(
        "{path} belongs to cluster {found}, not cluster {wanted}: this directory holds \
         another cluster's data; use an empty --data-dir to join cluster {wanted}"
    )]
    OtherCluster {
        /// The identity file.
        path: PathBuf,
        /// The cluster id recorded in it.
        found: String,
        /// The cluster id this node was asked to join.
        wanted: String,
    },
    /// The file exists but cannot be understood.
    #[error(
        "{path}: {why}; fix or remove the file (remove only if this is the right node's directory)"
    )]
    Malformed {
        /// The identity file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The identity file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A new random cluster id, in Kafka's form (a random UUID as URL-safe base64
/// without padding).
pub fn new_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    base64_url(&bytes)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn parse(path: &Path, text: &str) -> Result<Identity, IdentityError> {
    let malformed = |why: String| IdentityError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let props: BTreeMap<&str, &str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let cluster_id = props
        .get("cluster.id")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed("no cluster.id".into()))?;
    let node_id = props
        .get("node.id")
        .ok_or_else(|| malformed("no node.id".into()))?
        .parse::<i32>()
        .map_err(|e| malformed(format!("node.id: {e}")))?;
    Ok(Identity {
        cluster_id: cluster_id.to_string(),
        node_id,
    })
}

fn write(path: &Path, id: &Identity) -> std::io::Result<()> {
    let tmp = path.with_extension("properties.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    write!(
        f,
        "# Written by Weir at first start: the cluster and node this directory belongs to.\n\
         version=1\ncluster.id={}\nnode.id={}\n",
        id.cluster_id, id.node_id
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the identity of `data_dir`, or records one at first start (durable on
/// return). `node_id` must match a recorded one; `cluster_id`, when given, must
/// match too, and is the id recorded at first start (a fresh random one when
/// not given).
pub fn load_or_create(
    data_dir: &Path,
    node_id: i32,
    cluster_id: Option<&str>,
) -> Result<Identity, IdentityError> {
    let path = data_dir.join(FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = parse(&path, &text)?;
            if found.node_id != node_id {
                return Err(IdentityError::OtherNode {
                    path,
                    found: found.node_id,
                    wanted: node_id,
                });
            }
            match cluster_id {
                Some(wanted) if wanted != found.cluster_id => Err(IdentityError::OtherCluster {
                    path,
                    found: found.cluster_id,
                    wanted: wanted.to_string(),
                }),
                _ => Ok(found),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let id = Identity {
                cluster_id: cluster_id.map_or_else(new_cluster_id, str::to_string),
                node_id,
            };
            write(&path, &id).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First start records an identity; later starts get it back, refuse
    /// another node id or cluster id with the ids in the message, and refuse
    /// a damaged file.
    #[test]
    fn identity_is_recorded_once_and_checked_after() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), 2, None).unwrap();
        assert_eq!(first.node_id, 2);
        assert_eq!(first.cluster_id.len(), 22, "{}", first.cluster_id);
        assert_eq!(load_or_create(dir.path(), 2, None).unwrap(), first);
        let same = load_or_create(dir.path(), 2, Some(&first.cluster_id)).unwrap();
        assert_eq!(same, first);

        let err = load_or_create(dir.path(), 3, None).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::OtherNode {
                    found: 2,
                    wanted: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("--node-id 2"), "{err}");
        let err = load_or_create(dir.path(), 2, Some("another")).unwrap_err();
        assert!(err.to_string().contains("another"), "{err}");
        assert!(err.to_string().contains(&first.cluster_id), "{err}");

        std::fs::write(dir.path().join(FILE), "version=1\nnode.id=x\n").unwrap();
        let err = load_or_create(dir.path(), 2, None).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
    }

    /// A cluster id given at first start is the one recorded; random ids differ.
    #[test]
    fn given_cluster_id_is_recorded_and_random_ids_differ() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path(), 1, Some("weir-test")).unwrap();
        assert_eq!(id.cluster_id, "weir-test");
        assert_ne!(new_cluster_id(), new_cluster_id());
        assert_eq!(base64_url(&[0xfb, 0xff, 0x00]), "-_8A");
        assert_eq!(base64_url(&[0u8; 16]).len(), 22);
    }
}
