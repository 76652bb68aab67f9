//! Server side of the handler links.
