//! Which models can serve a request, in which order, and why (filled in below).
