//! A Weir node: the Kafka protocol server over the partition log.
