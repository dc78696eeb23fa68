//! A three-node openraft cluster over the transport.
